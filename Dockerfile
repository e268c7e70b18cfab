# The lattice-qdrant worker image: the CLI as its entrypoint, all-MiniLM-L6-v2 packaged (offline), and the
# onnx extra (ONNX Runtime, CPU). It is the image of the README's Kubernetes Job:
#
#   docker build -t lattice-qdrant:0.1.0 --build-arg TORCH_INDEX_URL=<PyTorch's CPU wheel index> .
#   docker run --rm -e LATTICE_QDRANT_URL=http://qdrant:6333 lattice-qdrant:0.1.0 status docs
#
# The CUDA variant is the same file with a CUDA build of torch (its wheels bring the CUDA libraries; the
# nodes need the NVIDIA driver and container toolkit) and without ONNX Runtime's CPU build:
#
#   docker build -t lattice-qdrant:0.1.0-cuda \
#       --build-arg TORCH_INDEX_URL=<PyTorch's wheel index for your CUDA version> --build-arg EXTRAS=minilm,metrics .
#
# and runs with LATTICE_QDRANT_DEVICE=cuda (and LATTICE_QDRANT_PRECISION=fp16).
#
# The venv is built as scripts/_venv.sh builds .venv (tests/test_image.py checks that they agree): torch
# first, pinned, from the index of the build wanted (a looser requirement lets the package's dependencies
# pull whichever build the default index has: on Linux, several GB of CUDA), then this package with its
# extras, which keeps that torch. The index has no default: PyTorch's install page names the index of each
# build (CPU, or one per CUDA version), and a build without one would take the default index's torch.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL
ARG EXTRAS=minilm,metrics,onnx
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
RUN /opt/venv/bin/python -m pip install --upgrade pip
RUN test -n "${TORCH_INDEX_URL}" || { echo "pass --build-arg TORCH_INDEX_URL=<PyTorch's wheel index of the build you want (CPU, or a CUDA version)>" >&2; exit 1; }
RUN /opt/venv/bin/python -m pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY lattice_qdrant ./lattice_qdrant
RUN /opt/venv/bin/python -m pip install ".[${EXTRAS}]"

FROM python:${PYTHON_VERSION}-slim
COPY --from=build /opt/venv /opt/venv
# Not root; the ONNX exports are cached in /cache (mount a volume there to share them between runs).
RUN useradd --create-home --uid 10001 lattice && mkdir /cache && chown lattice /cache
USER 10001
# Offline, as scripts/_venv.sh: the model ships inside a package, nothing is fetched from a hub at run time.
ENV PATH=/opt/venv/bin:$PATH \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_HUB_DISABLE_PROGRESS_BARS=1 \
    LATTICE_QDRANT_CACHE_DIR=/cache
ENTRYPOINT ["lattice-qdrant"]
CMD ["--help"]
