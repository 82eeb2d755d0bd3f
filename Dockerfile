# The harness in a container: a slim Python base, the CPU build of torch (the default index would
# bring a CUDA build of several GB), then the harness and its pinned dependencies.
#
#   docker build -t harness:latest .
#   PRECISION=fp32 OUTPUT_DIR=... DATASET_DIR=... CONFIG_FILE=bert-large ./run.sh
FROM python:3.11-slim

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/harness
# --backend fused compiles its kernels for the host CPU on first use: it needs a C++ compiler.
RUN apt-get update && apt-get install -y --no-install-recommends g++ && rm -rf /var/lib/apt/lists/*
# An empty TORCH_INDEX_URL takes torch from pip's configured sources (a local wheel, a mirror).
RUN pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} torch==2.13.0
COPY pyproject.toml README.md ./
COPY harness ./harness
COPY quickstart ./quickstart
RUN pip install .
# Fails the build on an image that cannot run the harness (a torch without oneDNN, say).
RUN python -m harness detect

CMD ["bash", "quickstart/run_bert_pretrain_phase1.sh"]
