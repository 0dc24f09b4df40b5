# syntax=docker/dockerfile:1.7
#
# faceverify images, in two steps:
#   models   Python 3.11 slim + the CPU build of torch: builds the ONNX models from registry packages
#            and verifies their manifest. Never shipped: torch stays out of the runtime image.
#   runtime  the service on the models: FLAVOUR=gpu (default) starts from the CUDA 12 runtime with
#            cuDNN 9 and takes onnxruntime-gpu and faiss-gpu-cu12; FLAVOUR=cpu starts from Python 3.11
#            slim and takes onnxruntime and faiss-cpu.
#
#   docker build -t faceverify:gpu .                           # GPU hosts (NVIDIA container toolkit)
#   docker build -t faceverify:cpu --build-arg FLAVOUR=cpu .   # CPU-only hosts
#
# Base images are pinned by tag and digest (linux/amd64), Python packages by version in docker/*.txt.
# docker/install-*.sh do the installing, so that .ci/replay-cpu-image can replay them outside Docker.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04@sha256:59e0e4376a0f16d10b03d3a14344b80a866a1674cb4948cb318291387ac05010
ARG FLAVOUR=gpu

FROM ${PYTHON_IMAGE} AS models
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PYTHON=python3.11 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY . .
RUN TORCH_INDEX_URL="${TORCH_INDEX_URL}" docker/install-build.sh /opt/build \
    && /opt/build/bin/faceverify models build --out /models \
    && /opt/build/bin/faceverify models verify --models /models

FROM ${PYTHON_IMAGE} AS base-cpu

FROM ${CUDA_IMAGE} AS base-gpu
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Ubuntu 22.04's own Python 3.11; the pinned image digest fixes the release it starts from.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
    && rm -rf /var/lib/apt/lists/*

# hadolint ignore=DL3006
FROM base-${FLAVOUR} AS runtime
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG FLAVOUR
ENV PYTHON=python3.11 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml README.md /src/
COPY docker/ /src/docker/
COPY app/ /src/app/
COPY faceverify/ /src/faceverify/
COPY training/ /src/training/
RUN /src/docker/install-runtime.sh /opt/faceverify "${FLAVOUR}" \
    && install -m 0755 /src/docker/healthcheck.py /usr/local/bin/faceverify-healthcheck \
    && rm -rf /src \
    && groupadd --system --gid 10001 faceverify \
    && useradd --system --uid 10001 --gid faceverify --home-dir /data --shell /usr/sbin/nologin faceverify \
    && mkdir -p /data && chown faceverify:faceverify /data
# The models are baked in, read-only; only /data (SQLite and index snapshots) is written.
COPY --from=models /models /opt/faceverify/models
ENV PATH=/opt/faceverify/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    FV_HOST=0.0.0.0 \
    FV_PORT=8000 \
    FV_MODELS_DIR=/opt/faceverify/models \
    FV_DATA_DIR=/data
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/usr/local/bin/faceverify-healthcheck"]
CMD ["faceverify", "serve"]
