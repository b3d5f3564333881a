# syntax=docker/dockerfile:1
# whatsapp-support-exporter: Prometheus exporter for the WhatsApp Business API On-Premises client.
#   docker build -t whatsapp-support-exporter .
#   docker run --rm -p 10042:10042 whatsapp-support-exporter --demo

# One of the Python versions the tests run on (pyproject.toml's classifiers); an exact patch
# release, so rebuilds are repeatable.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- build: install the package and its dependencies into a virtual environment -----------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv

WORKDIR /src
# The locked runtime packages (exported from uv.lock by `nox -s lock`), each checked by its hash;
# a layer of its own, rebuilt only when the lock changes.
COPY requirements/runtime.txt requirements/
RUN /opt/venv/bin/pip install --no-cache-dir --require-hashes --no-deps -r requirements/runtime.txt
COPY pyproject.toml README.md ./
COPY whatsapp_support_exporter/ whatsapp_support_exporter/
COPY whatsapp_api_simulator/ whatsapp_api_simulator/
# The exporter itself, on top of exactly those packages.
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps /src

# --- runtime: the virtual environment only, as an unprivileged user -----------------------------
FROM ${PYTHON_IMAGE}

# Set by the release workflow.
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=unknown

LABEL org.opencontainers.image.title="whatsapp-support-exporter" \
      org.opencontainers.image.description="Prometheus exporter for the WhatsApp Business API On-Premises client (/v1/support)" \
      org.opencontainers.image.url="https://github.com/whatsapp-support-exporter/whatsapp-support-exporter" \
      org.opencontainers.image.source="https://github.com/whatsapp-support-exporter/whatsapp-support-exporter" \
      org.opencontainers.image.documentation="https://github.com/whatsapp-support-exporter/whatsapp-support-exporter/blob/main/docs/deploying.md" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"

# Listen on every interface of the container, --demo included (outside a container the demo
# keeps to 127.0.0.1): a published port (`docker run -p 10042:10042`) reaches the container's
# interface, never its loopback, and the image has no other local user to keep out. To move the
# port, set this variable (or the flag), not its 0.1 name WA_LISTEN_ADDRESS: both set to
# different values is refused.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    WA_WEB_LISTEN_ADDRESS=:10042

# A named user with the numeric id Kubernetes' runAsNonRoot can check (USER below is numeric).
RUN groupadd --system --gid 65532 exporter \
    && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin exporter

COPY --from=build /opt/venv /opt/venv

USER 65532:65532
EXPOSE 10042

# For `docker run` and Compose (Kubernetes uses the manifests' probes). The port is taken from
# WA_WEB_LISTEN_ADDRESS / WA_LISTEN_ADDRESS; with TLS on the exporter's own endpoint (a web config
# file), override this check.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; a = os.environ.get('WA_WEB_LISTEN_ADDRESS') or os.environ.get('WA_LISTEN_ADDRESS') or ':10042'; urllib.request.urlopen('http://127.0.0.1:' + a.rpartition(':')[2] + '/-/healthy', timeout=4)"]

ENTRYPOINT ["/opt/venv/bin/whatsapp-support-exporter"]
