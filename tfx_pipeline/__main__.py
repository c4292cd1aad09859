from tfx_pipeline.cli import main

raise SystemExit(main())
