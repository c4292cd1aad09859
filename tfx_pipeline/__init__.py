"""TFX-style training pipeline: raw text -> validated TFRecords -> BERT -> pushed SavedModel.

Where things are:
- `pipeline.py`: the pipeline definition (which components, wired how).
- `components/`: the components; `beam/`: their Apache Beam transforms.
- `model/`: the Keras model code (TFX's module file); `evaluation/`: metrics and blessing.
- `runner.py`: runs a pipeline here, with caching, resume and run records.
- `cli.py`: `suite-pipeline`, the command line.
"""

import os

# First: it records the user's own TF_CPP_MIN_LOG_LEVEL, which the CLIs honour.
import suite_core.tf_logging  # noqa: F401

# Keras 3 picks its backend at import time; this suite is TensorFlow throughout.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# The library's default; the command lines set 3 unless --verbose (suite_core.tf_logging).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TensorFlow leaves oneDNN off on AMD CPUs; measured 2x faster training here
# (`python -m benchmarks pipeline trainer`). Set it to 0 to opt out.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
