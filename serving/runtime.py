"""Process-wide TensorFlow set-up, done once before any model is loaded."""

from __future__ import annotations

import logging
import threading

from serving.options import RuntimeOptions

log = logging.getLogger(__name__)
_lock = threading.Lock()
_custom_ops_loaded = False


def prepare_tensorflow(options: RuntimeOptions) -> None:
    """Registers custom ops and sizes TensorFlow's thread pools.

    Our text models tokenize inside the graph with tensorflow-text ops, which
    only exist once ``tensorflow_text`` is imported.  Thread pools can only be
    sized before TensorFlow's runtime starts; when several servers share a
    process (tests) the first one wins and later differing requests are
    logged, not fatal.
    """
    global _custom_ops_loaded
    import tensorflow as tf

    with _lock:
        if not _custom_ops_loaded:
            import tensorflow_text  # noqa: F401  (registers the ops)

            _custom_ops_loaded = True
        for setting, value in (
            ("intra_op", options.intra_op_parallelism),
            ("inter_op", options.inter_op_parallelism),
        ):
            if value <= 0:
                continue
            getter = getattr(tf.config.threading, f"get_{setting}_parallelism_threads")
            setter = getattr(tf.config.threading, f"set_{setting}_parallelism_threads")
            if getter() == value:
                continue
            try:
                setter(value)
            except RuntimeError:
                log.warning(
                    "TensorFlow is already initialized with %s parallelism %d; cannot change it to %d",
                    setting, getter(), value,
                )
