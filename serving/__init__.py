"""A TensorFlow Serving compatible model server, its client and tools.

- :mod:`serving.server` -- :class:`~serving.server.ModelServer`, in-process or via ``python -m serving``
- :mod:`serving.client` -- the client the apps use (works against real TF Serving too)
- :mod:`serving.benchmark` -- closed-loop gRPC load generator
"""
