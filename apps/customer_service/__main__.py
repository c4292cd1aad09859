"""``python -m apps.customer_service``: see :mod:`apps.customer_service.cli`."""

import sys

from apps.customer_service.cli import main

sys.exit(main())
