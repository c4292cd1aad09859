"""Training progress for logs: one line every few seconds, not one per epoch.

On a terminal Keras draws its own progress bar; in a log (CI, a pod, a
background run) a Banking77 epoch would otherwise print nothing for minutes.
``ProgressLog`` writes a line such as::

    epoch 2/8 step 120/282 (43%) loss 1.2345 32.1 examples/s, epoch ETA 5m02s

at most every ``every_seconds``, and one at each epoch's end with its
validation metrics.

>>> import io, logging
>>> stream = io.StringIO()
>>> logger = logging.getLogger("progress-doctest")
>>> logger.addHandler(logging.StreamHandler(stream)); logger.setLevel(logging.INFO)
>>> progress = ProgressLog(steps_per_epoch=10, batch_size=32, epochs=2, every_seconds=0.0, logger=logger)
>>> progress.on_epoch_begin(0)
>>> progress.on_train_batch_end(4, {"loss": 0.5})
>>> "epoch 1/2 step 5/10 (50%) loss 0.5000" in stream.getvalue()
True
>>> progress.on_epoch_end(0, {"loss": 0.4, "val_accuracy": 0.9})
>>> stream.getvalue().splitlines()[-1].startswith("epoch 1/2 done in")
True
"""

from __future__ import annotations

import logging
import time

import keras

log = logging.getLogger(__name__)


def format_duration(seconds: float) -> str:
    """``75`` → ``1m15s``; ``3725`` → ``1h02m``.

    >>> format_duration(42.4), format_duration(75), format_duration(3725)
    ('42s', '1m15s', '1h02m')
    """
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class ProgressLog(keras.callbacks.Callback):
    """Logs steps, examples/s and the epoch's ETA every ``every_seconds``.

    ``steps_per_epoch`` may be None (a dataset of unknown length): the first
    epoch then logs steps without a total, later epochs use the first's count.
    """

    def __init__(self, steps_per_epoch: int | None, batch_size: int, epochs: int,
                 every_seconds: float = 30.0, logger: logging.Logger | None = None):
        super().__init__()
        self.steps_per_epoch, self.batch_size, self.epochs = steps_per_epoch, batch_size, epochs
        self.every_seconds = every_seconds
        self.log = logger or log
        self.epoch = 0
        self.epoch_started = self.last_line = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.epoch_started = self.last_line = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        now = time.monotonic()
        if now - self.last_line < self.every_seconds:
            return
        self.last_line = now
        steps = batch + 1
        rate = steps / max(now - self.epoch_started, 1e-9)
        total = f"/{self.steps_per_epoch} ({100 * steps // self.steps_per_epoch}%)" if self.steps_per_epoch else ""
        eta = (f", epoch ETA {format_duration((self.steps_per_epoch - steps) / rate)}"
               if self.steps_per_epoch else "")
        loss = f" loss {float(logs['loss']):.4f}" if logs and "loss" in logs else ""
        self.log.info("epoch %d/%d step %d%s%s %.1f examples/s%s", self.epoch + 1, self.epochs, steps, total,
                      loss, rate * self.batch_size, eta)

    def on_epoch_end(self, epoch, logs=None):
        metrics = " ".join(f"{name} {float(value):.4f}" for name, value in sorted((logs or {}).items()))
        self.log.info("epoch %d/%d done in %s: %s", epoch + 1, self.epochs,
                      format_duration(time.monotonic() - self.epoch_started), metrics)
