# syntax=docker/dockerfile:1
# The image every Kubeflow component of kdpipe runs in. Build it with `make image`, which tags it
# with the reference the pipeline uses (src/kdpipe/kubeflow/image.py).
#
# CUDA: torch from requirements.lock is the CUDA build, its CUDA and cuDNN libraries come as the
# nvidia-* wheels pinned there; a GPU node only adds its driver (NVIDIA container toolkit).
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# Where the public index cannot be reached, scripts/build-image.sh points pip at local wheels and a
# CA bundle through these; unset (the default), pip uses PyPI. Build arguments only: not in the image.
ARG PIP_FIND_LINKS
ARG PIP_EXTRA_INDEX_URL
ARG PIP_CERT
# Compilers only here, for any dependency that ships no wheel; the final stage has none.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential=12.9 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY requirements.lock ./
# The same pinned stack as `make demo`, in a virtual environment that the final stage copies.
RUN python -m venv /opt/kdpipe \
    && /opt/kdpipe/bin/pip install --no-cache-dir --upgrade "pip>=25" \
    && /opt/kdpipe/bin/pip install --no-cache-dir -r requirements.lock
COPY pyproject.toml README.md ./
COPY src ./src
COPY probe ./probe
COPY components ./components
COPY pipelines ./pipelines
RUN /opt/kdpipe/bin/pip install --no-cache-dir --no-deps ./probe .

FROM ${PYTHON_IMAGE} AS runtime
ARG IMAGE=ghcr.io/kdpipe/kdpipe:0.1.0
LABEL org.opencontainers.image.ref.name="${IMAGE}" \
      org.opencontainers.image.title="kdpipe" \
      org.opencontainers.image.description="Nightly knowledge distillation with the projector recipe"
# Fashion-MNIST from Debian, so the embedded default runs without a network.
RUN apt-get update \
    && apt-get install -y --no-install-recommends dataset-fashion-mnist=0.0~git20200523.55506a9-1 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/kdpipe /opt/kdpipe
RUN useradd --create-home --uid 10001 kdpipe
# No NVIDIA_VISIBLE_DEVICES here: the device plugin sets it for pods that request GPUs, and a
# default of "all" would hand every GPU of a node to pods that requested none.
ENV PATH=/opt/kdpipe/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 10001
WORKDIR /home/kdpipe
ENTRYPOINT ["kdpipe"]
CMD ["--help"]
