# syntax=docker/dockerfile:1
# The ranker: HTTP JSON endpoint (POST /v1/rank, GET /healthz) on 8090,
# calling the catalog embedder and re-ranker on TF Serving over gRPC; the
# catalog index lives under /data (a volume in Kubernetes).
#
#   docker build -f infra/docker/ranker.Dockerfile -t REGISTRY/nlp-suite/ranker:0.1.0 .

# The TF Serving API's generated protobuf modules (tensorflow_serving/apis/*_pb2*.py and the
# tensorflow/core/... ones they import), copied out of the two wheels by collect_serving_protos.py.
# The wheels go in without their dependencies: only their files are read, TensorFlow is never run.
FROM python:3.11-slim AS serving-protos
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /build
COPY constraints.txt infra/docker/collect_serving_protos.py ./
# protobuf and grpcio: --check imports the copy on its own, as the app image will.
RUN pip install -c constraints.txt protobuf grpcio \
 && pip install --no-deps -c constraints.txt tensorflow tensorflow-serving-api \
 && python collect_serving_protos.py --output /protos --check

# The app: its own requirements, the protos above, and the code it runs (no tfx_pipeline,
# no TensorFlow); PYTHONPATH instead of installing the package, whose metadata would declare
# the whole stack as its dependencies.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app
WORKDIR /app

COPY constraints.txt infra/docker/apps-requirements.txt /tmp/requirements/
RUN pip install -c /tmp/requirements/constraints.txt -r /tmp/requirements/apps-requirements.txt
COPY --from=serving-protos /protos/ /usr/local/lib/python3.11/site-packages/
COPY serving ./serving
COPY suite_core ./suite_core
COPY apps ./apps
# The image's client imports with the protos alone: `tensorflow` is the copy's empty package.
RUN python -c "import sys, serving.model_client, apps.ranker.ranker, apps.ranker.web; assert not hasattr(sys.modules['tensorflow'], 'constant')"

RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin suite \
 && mkdir -p /data/index && chown -R suite /data
USER 10001
EXPOSE 8090

# --server: the model server's gRPC address (the tf-serving Service in-cluster).
# --index: absolute, on the volume (a relative index.path resolves against the
# code's directory, /app/work/..., and would vanish with the container).
ENTRYPOINT ["python", "-m", "apps.ranker"]
CMD ["--server", "tf-serving:8500", "--index", "/data/index", "serve", "--host", "0.0.0.0", "--port", "8090"]
