# syntax=docker/dockerfile:1.7
# One Dockerfile, three images (see README "Deploy"):
#   docker build -t candor:0.1.0 .                                    the server, CPU (default, last stage)
#   docker build -t candor:0.1.0-gpu --build-arg VARIANT=gpu .        the server on CUDA 13 + cuDNN 9 with onnxruntime-gpu
#   docker build -t candor-trainer:0.1.0 --target trainer .           the one-shot trainer (torch, CPU)
# The server images carry no torch. Base images are pinned; bump them deliberately.
ARG VARIANT=cpu
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm
# onnxruntime-gpu 1.31's metadata asks for CUDA 13 and cuDNN 9.
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04

FROM ${PYTHON_IMAGE} AS base-cpu
ENV CANDOR_EXTRA=server

FROM ${CUDA_IMAGE} AS base-gpu
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
ENV CANDOR_EXTRA=gpu

# The build stages compile the prediction sets' kernel (setup.py: candor.server.core._ranked_sets, C) and need
# a C compiler and Python's headers for it; the images they feed copy only /opt/candor, so no compiler ships.
# The CPU base's Python (python:*-slim) has its headers; the GPU base's Debian-packaged python3 needs python3-dev.
FROM base-cpu AS build-cpu
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*

FROM base-gpu AS build-gpu
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev python3-dev \
 && rm -rf /var/lib/apt/lists/*

# The source files a wheel needs, and nothing else (tests/deploy checks that they suffice).
FROM base-cpu AS source
WORKDIR /src
COPY pyproject.toml setup.py README.md LICENSE constraints.txt ./
COPY src src
COPY deploy/docker deploy/docker

# Each build installs the pinned dependencies first, from pyproject.toml and constraints.txt
# alone, so that a source edit reuses that layer (torch included) and reinstalls only Candor.
FROM build-cpu AS trainer-build
COPY pyproject.toml constraints.txt deploy/docker/install.sh /deps/
RUN PIP_NO_CACHE_DIR=1 CANDOR_INSTALL_PHASE=deps sh /deps/install.sh train /opt/candor /deps
COPY --from=source /src /src
RUN PIP_NO_CACHE_DIR=1 CANDOR_INSTALL_PHASE=package sh /src/deploy/docker/install.sh train /opt/candor /src

FROM base-cpu AS trainer
COPY --from=trainer-build /opt/candor /opt/candor
COPY deploy/docker/train-once.sh /usr/local/bin/candor-train-once
ENV PATH=/opt/candor/bin:$PATH PYTHONUNBUFFERED=1 CANDOR_MODEL_REPOSITORY=/models
# Named volumes start as copies of these folders, so they belong to the unprivileged user.
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin candor \
 && mkdir -p /models /demo-data && chown 10001:10001 /models /demo-data
USER 10001
ENTRYPOINT ["candor-train-once"]

FROM build-${VARIANT} AS server-build
COPY pyproject.toml constraints.txt deploy/docker/install.sh /deps/
RUN PIP_NO_CACHE_DIR=1 CANDOR_INSTALL_PHASE=deps sh /deps/install.sh "$CANDOR_EXTRA" /opt/candor /deps
COPY --from=source /src /src
RUN PIP_NO_CACHE_DIR=1 CANDOR_INSTALL_PHASE=package sh /src/deploy/docker/install.sh "$CANDOR_EXTRA" /opt/candor /src

FROM base-${VARIANT} AS server
COPY --from=server-build /opt/candor /opt/candor
ENV PATH=/opt/candor/bin:$PATH PYTHONUNBUFFERED=1 CANDOR_MODEL_REPOSITORY=/models CANDOR_DATA_DIR=/data
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin candor \
 && mkdir -p /models /data && chown 10001:10001 /models /data
USER 10001
WORKDIR /data
EXPOSE 8001 8002
# The gRPC health service (grpc.health.v1), asked by the SDK's CLI: exit 0 only when SERVING.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["candor", "health", "--target", "127.0.0.1:8001", "--timeout-seconds", "3"]
ENTRYPOINT ["candor", "serve"]
# One server process per CPU the container may use (its cgroup quota: docker run --cpus, a pod's CPU limit),
# all on port 8001 and behind one metrics endpoint on 8002. A command of your own replaces this; keep the flag.
CMD ["--workers", "auto"]
