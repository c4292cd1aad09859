"""Benchmarks that print numbers: the suite's speed and quality figures, each with the baseline it is
compared with measured in the same run (this machine's speed drifts from minute to minute).

Not part of the tests (scaled-down runs of some are).  ``python -m benchmarks --help`` lists them;
``python -m benchmarks <name> --help`` (or ``python -m benchmarks.<name> --help``) gives one's options.

- :mod:`benchmarks.loadgen`: the one load generator (sequential, closed-loop, open-loop) and its
  latency summary, used by all of the below; servers are started with :mod:`serving.launcher`.
- :mod:`benchmarks.serving`: the model server over gRPC, batching off and on, against the SavedModel
  called in-process::

      python -m benchmarks serving --model_path work/models/intent/1 --soak_seconds 600

- :mod:`benchmarks.rest_front`: the REST predict path on uvicorn against the old ``http.server`` fronts::

      python -m benchmarks rest_front --model_path work/models/intent/1 --clients 16 --seconds 20 --rounds 3

- :mod:`benchmarks.customer_service`: HTTP -> app -> gRPC -> model against the server alone, and
  accuracy / coverage at the target precision::

      python -m benchmarks customer_service --model-base-path work/models/intent

- :mod:`benchmarks.ranker`: a ranking request by stage, and the re-rank stage against the server alone::

      python -m benchmarks ranker --embedder scifact_embedder --reranker scifact_reranker \\
          --model-base-path work/models

- :mod:`benchmarks.sentiment_monitor`: items/s end to end, alert latency, and the server's own rate::

      python -m benchmarks sentiment_monitor --model-base-path work/models/sentiment

- :mod:`benchmarks.pipeline`: Beam preprocessing, training speed (XLA, oneDNN, distribution, multi-worker),
  peak memory, full training, compression (``make benchmark`` runs ``pipeline all``)::

      python -m benchmarks pipeline beam|trainer|distribution|multi-worker|memory|full-training|compression|all

- :mod:`benchmarks.compression_peers`: the exported fp32 encoder against ONNX Runtime fp32 and dynamic
  int8 on the same token ids, one thread each; a reference, not served (needs the ``peers`` extra)::

      python -m benchmarks compression_peers --model_path work/models/intent/1
"""
