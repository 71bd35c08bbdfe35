# textgen HTTP service on CPU.
#
#   docker build -t textgen .
#   docker run --rm -p 8000:8000 textgen          # then: curl localhost:8000/health
#
# Build arguments:
#   TORCH_VERSION  the torch release (default 2.13.0, as in the Makefile)
#   TORCH_FROM     where torch comes from: a package index URL (default PyTorch's CPU index, so
#                  no CUDA libraries come along), or "local" for the wheel file(s) put in
#                  ./wheels/ of the build context, for machines that cannot reach that index
#   MODEL          the checkpoint to bundle, a path in the build context under checkpoints/
#                  (default checkpoints/default/model.pt); served from
#                  /app/checkpoints/default/model.pt
#
# The server is configured at run time with TEXTGEN_* variables (see `textgen serve --help`):
#   docker run -p 8000:8000 -e TEXTGEN_MAX_BATCH=32 -e TEXTGEN_THREADS=2 textgen
#
# python:3.11-slim-bookworm: Debian bookworm with Python 3.11 and nothing else, the same release
# and Python as a bookworm host with python3 + python3-venv (how scripts/docker-test.sh builds
# this without a registry), and the Python the cp311 torch wheels are built for. Everything is
# installed into a venv, so the same lines work whether python3 lives in /usr/local (the
# official image) or /usr (Debian's package).

# ---- build: a venv holding torch, the dependencies and textgen ----
FROM python:3.11-slim-bookworm AS build

ARG TORCH_VERSION=2.13.0
ARG TORCH_FROM=https://download.pytorch.org/whl/cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH

RUN python3 -m venv /opt/venv
WORKDIR /src

# Dependencies before the code, so that a code change reuses these layers. `wheel[s]` copies
# the files of an optional ./wheels/ folder (and nothing when there is none); pyproject.toml
# always matches, so the COPY never comes up empty.
COPY pyproject.toml wheel[s] ./
# Torch first and from its own source, then the rest from PyPI (torch>=2.10 is then already
# satisfied, so pip keeps the CPU build). "local": a local version such as 2.13.0+cpu sorts
# above a plain 2.13.0, so pip takes the wheel here; torch's own dependencies come from PyPI.
RUN if [ "$TORCH_FROM" = local ]; then \
        pip install --no-cache-dir --find-links /src "torch==${TORCH_VERSION}"; \
    else \
        pip install --no-cache-dir --index-url "$TORCH_FROM" "torch==${TORCH_VERSION}"; \
    fi \
 && python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' > requirements.txt \
 && pip install --no-cache-dir -r requirements.txt \
 && python -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'

COPY README.md ./
COPY textgen/ textgen/
RUN pip install --no-cache-dir --no-deps . && pip check

# ---- runtime: the venv, the bundled model and a non-root user ----
FROM python:3.11-slim-bookworm

LABEL org.opencontainers.image.title="textgen" \
      org.opencontainers.image.description="Character-level Chinese text generation: HTTP API and playground (CPU)" \
      org.opencontainers.image.licenses="MIT"

# A fixed numeric uid, so that Kubernetes' runAsNonRoot can verify it.
RUN groupadd --system --gid 10001 textgen \
 && useradd --system --uid 10001 --gid textgen --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin textgen

COPY --from=build /opt/venv /opt/venv
ARG MODEL=checkpoints/default/model.pt
# Read-only for everyone: training writes checkpoints 0600, which the server user could not read.
COPY --chmod=0444 ${MODEL} /app/checkpoints/default/model.pt

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LANG=C.UTF-8 \
    TEXTGEN_CHECKPOINT=/app/checkpoints/default/model.pt \
    TEXTGEN_HOST=0.0.0.0 \
    TEXTGEN_PORT=8000

WORKDIR /app
USER 10001:10001
EXPOSE 8000

# No curl in a slim image: Python's urllib does the request. /ready answers 200 once the model
# is loaded and the engine runs, and 503 while draining on SIGTERM (/health stays the liveness
# check); loading takes a few seconds, hence the start period. Both stay open with API keys on.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/ready' % os.environ.get('TEXTGEN_PORT', '8000'), timeout=4)"]

# No flags here: they would override the TEXTGEN_* variables.
CMD ["textgen", "serve"]
