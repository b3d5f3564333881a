# syntax=docker/dockerfile:1
# whatsapp-support-exporter: Prometheus exporter for the WhatsApp Business API On-Premises client.
#   docker build -t whatsapp-support-exporter .
#   docker run --rm -p 10042:10042 whatsapp-support-exporter --demo

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# --- build: install the package and its dependencies into a virtual environment -----------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv

WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter/ exporter/
RUN /opt/venv/bin/pip install --no-cache-dir /src

# --- runtime: the virtual environment only, as an unprivileged numeric user ----------------------
FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="whatsapp-support-exporter" \
      org.opencontainers.image.description="Prometheus exporter for the WhatsApp Business API On-Premises client (/v1/support)" \
      org.opencontainers.image.source="https://github.com/whatsapp-support-exporter/whatsapp-support-exporter" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

COPY --from=build /opt/venv /opt/venv

USER 65532:65532
EXPOSE 10042

ENTRYPOINT ["/opt/venv/bin/whatsapp-support-exporter"]
