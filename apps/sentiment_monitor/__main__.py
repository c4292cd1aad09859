"""``python -m apps.sentiment_monitor``: see :mod:`apps.sentiment_monitor.cli`."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter hides the monitor's own log.

from apps.sentiment_monitor.cli import main  # noqa: E402

raise SystemExit(main())
