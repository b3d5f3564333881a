"""One WhatsApp Business Account to watch on the Cloud API: its id, where, and its token.

The token is a ``SecretStr`` or a file read again at every poll (a rotated Kubernetes Secret
heals without a reload); its text never reaches a log line, a label, a page or an exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from whatsapp_support_exporter.upstream.onprem.target import SecretFileError, _read_secret

GRAPH_URL = "https://graph.facebook.com"
API_VERSION = "v24.0"
INTERVAL = 300.0


def read_token_file(path: Path) -> str:
    """The token in ``path``, stripped; an empty file is an error (a Secret not yet filled)."""
    token = _read_secret(path)
    if not token:
        raise SecretFileError(f"{path} is empty")
    return token


@dataclass(frozen=True)
class CloudAccount:
    """An account as configured; compared by value (a reload keeps an unchanged account)."""

    name: str  # the `account` label
    waba_id: str
    graph_url: str = GRAPH_URL
    api_version: str = API_VERSION
    interval: float = INTERVAL
    token: SecretStr | None = None
    token_file: Path | None = None

    @property
    def stale_after(self) -> float:
        """Data series are withdrawn after three intervals without success."""
        return 3 * self.interval

    def read_token(self) -> str | None:
        if self.token_file is not None:
            return read_token_file(self.token_file)
        return self.token.get_secret_value() if self.token is not None else None
