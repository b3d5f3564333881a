"""WhatsApp Business API On-Premises /v1/support exporter for Prometheus."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("whatsapp-support-exporter")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
