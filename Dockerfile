# syntax=docker/dockerfile:1
# AgriBridge (农商桥) API image.
#
#   docker build -t agribridge .
#   docker run -p 8000:8000 -e MARKET_DATABASE_URL=postgresql://user:pass@host:5432/db agribridge
#
# Without MARKET_DATABASE_URL the server starts embedded PostgreSQL in MARKET_DATA_DIR
# (/var/lib/agribridge/pgdata, owned by uid 10001): mount a volume there to keep the data
# (no VOLUME line, so that runs with a database URL do not leave anonymous volumes behind).
# The schema must be current before `market serve` starts: run `market db upgrade` first
# (compose.yaml does this in its `migrate` service). For a one-container demo on the embedded
# database: docker run -p 8000:8000 -v agribridge-data:/var/lib/agribridge agribridge market demo

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------- builder
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1

# uv lives in the builder's own Python only; the runtime image never sees it
RUN python -m pip install "uv>=0.9,<1" \
    && python -m venv /opt/venv

WORKDIR /app

# dependencies first, so that a source change does not reinstall them
COPY requirements-runtime.lock ./
RUN uv pip sync --python /opt/venv/bin/python requirements-runtime.lock

# the project, editable: market/migrate.py finds the migrations at /app/migrations
# (<repo>/migrations next to the package), so the source tree stays at /app in both stages
COPY . .
RUN uv pip install --python /opt/venv/bin/python --no-deps -e . \
    && /opt/venv/bin/python -m compileall -q market search payments migrations

# ---------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MARKET_HOST=0.0.0.0 \
    MARKET_PORT=8000 \
    MARKET_DATA_DIR=/var/lib/agribridge

RUN groupadd --system --gid 10001 agribridge \
    && useradd --system --uid 10001 --gid agribridge --home-dir /var/lib/agribridge \
        --no-create-home --shell /usr/sbin/nologin agribridge \
    && install -d -o agribridge -g agribridge -m 0750 /var/lib/agribridge

# same paths as in the builder: the venv's scripts and the editable install point at them
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app

WORKDIR /app
USER agribridge:agribridge
EXPOSE 8000

# liveness only (/readyz also checks the database, search and payments); slim has no curl.
# `market serve` takes its port from PORT when set, else MARKET_PORT.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('PORT') or os.environ.get('MARKET_PORT', '8000'); urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]

CMD ["market", "serve"]
