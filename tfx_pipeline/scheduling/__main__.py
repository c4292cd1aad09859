"""``python -m tfx_pipeline.scheduling``: see :mod:`tfx_pipeline.scheduling.cli`."""

import sys

from tfx_pipeline.scheduling.cli import main

sys.exit(main())
