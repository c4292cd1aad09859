"""A TensorFlow Serving compatible model server, its client and tools.

- :mod:`serving.server` -- :class:`~serving.server.ModelServer`, in-process or via ``python -m serving``
- :mod:`serving.client` -- the client the apps use (works against real TF Serving too)
- :mod:`serving.launcher` -- ``python -m serving`` as a child process on free loopback ports (benchmarks, tests)

Its benchmarks live outside the package, in ``benchmarks/`` (``python -m benchmarks --help``).
"""
