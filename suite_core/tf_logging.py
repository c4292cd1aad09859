"""TensorFlow's C++ log lines, off by default in the suite's command lines.

TensorFlow reads ``TF_CPP_MIN_LOG_LEVEL`` once, when it loads, so each CLI calls
:func:`quiet_tensorflow` first thing in ``main``: level 3, FATAL only.  Level 2
would still print ERROR lines, which on a machine without a GPU are CUDA probes
(``failed call to cuInit``), not failures; a real failure still raises in Python.
A user's own ``TF_CPP_MIN_LOG_LEVEL`` wins, and ``--verbose`` / ``-v`` leaves
TensorFlow's default (everything).

The user's setting is the one found when this module was first imported: the
packages import it before they set a default of their own.

Lines TensorFlow writes before it initialises its logging ("All log messages
before absl::InitializeLog() ...", oneDNN and ``cudart_stub`` notices) ignore the
variable in TensorFlow 2.21; they are left alone rather than silencing the
process's standard error while TensorFlow loads, which would hide real errors.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
QUIET_LEVEL = "3"
VERBOSE_FLAGS = ("-v", "--verbose")

USER_LEVEL = os.environ.get(LEVEL_VARIABLE)  # Before any package of the suite set a default.


def quiet_tensorflow(argv: Sequence[str] = ()) -> None:
    """Sets TensorFlow's C++ log level for this process and its children, before TensorFlow loads.

    ``argv`` up to a ``--`` (after it: options for Beam) is searched for a verbose flag.
    """
    if USER_LEVEL is not None:
        os.environ[LEVEL_VARIABLE] = USER_LEVEL
        return
    own = list(argv)[: list(argv).index("--")] if "--" in argv else list(argv)
    if any(flag in own for flag in VERBOSE_FLAGS):
        os.environ.pop(LEVEL_VARIABLE, None)
    else:
        os.environ[LEVEL_VARIABLE] = QUIET_LEVEL
