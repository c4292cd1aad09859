# syntax=docker/dockerfile:1
# The sentiment monitor: follows a news stream, scores it with the sentiment
# model on TF Serving, sends alerts; dashboard, /healthz and /metrics on 8090.
#
#   docker build -f infra/docker/sentiment-monitor.Dockerfile -t REGISTRY/nlp-suite/sentiment-monitor:0.1.0 .

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
RUN python -c "import sys, serving.model_client, apps.sentiment_monitor.app, apps.sentiment_monitor.dashboard; assert not hasattr(sys.modules['tensorflow'], 'constant')"

RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin suite \
 && mkdir -p /data && chown suite /data
USER 10001
WORKDIR /data
EXPOSE 8090

ENTRYPOINT ["python", "-m", "apps.sentiment_monitor"]
CMD ["run", "--config", "/config/monitor.yaml"]
