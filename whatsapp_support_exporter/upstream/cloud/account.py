"""One WhatsApp Business Account to watch on the Cloud API: its id, where, and its token.

The token is a ``SecretStr`` or a file read again at every poll (a rotated Kubernetes Secret
heals without a reload); its text never reaches a log line, a label, a page or an exception.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr
from yarl import URL

from whatsapp_support_exporter.upstream.http import HEADER_SAFE
from whatsapp_support_exporter.upstream.onprem.target import SecretFileError, _read_secret

GRAPH_URL = "https://graph.facebook.com"
API_VERSION = "v24.0"
INTERVAL = 300.0


def read_token_file(path: Path) -> str:
    """The token in ``path``, stripped; an empty file is an error (a Secret not yet filled)."""
    token = _read_secret(path)
    if not token:
        raise SecretFileError(f"{path} is empty")
    if not HEADER_SAFE.fullmatch(token):
        raise SecretFileError(f"{path}: {UNSENDABLE}")
    return token


# Why a token cannot be sent; the token itself is never part of a message.
UNSENDABLE = "the token holds spaces or control characters (give the token alone, no 'Bearer ')"


def check_token(token: SecretStr | None) -> SecretStr | None:
    """An inline token a header can carry: printable ASCII without spaces."""
    if token is not None and not HEADER_SAFE.fullmatch(token.get_secret_value().strip()):
        raise ValueError(UNSENDABLE)
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
        return self.token.get_secret_value().strip() if self.token is not None else None


MIN_CLOUD_INTERVAL = 10.0
# Below this interval a warning names the Graph API's rate limit.
WARN_CLOUD_INTERVAL = 60.0
_API_VERSION = re.compile(r"v\d+(\.\d+)?")


def check_waba_id(waba_id: str) -> str:
    """A WhatsApp Business Account id: digits only (it becomes a path segment)."""
    if not waba_id.isascii() or not waba_id.isdigit():
        raise ValueError("a WABA id is digits only")
    return waba_id


def parse_waba_id(text: str) -> tuple[str, str]:
    """``name=waba_id`` or ``waba_id`` (the name then is the id) as (name, waba_id)."""
    name, sep, waba_id = text.strip().partition("=")
    if not sep:
        name, waba_id = "", name
    waba_id = check_waba_id(waba_id.strip())
    return name.strip() or waba_id, waba_id


def check_graph_url(url: str) -> str:
    """An http(s) base URL with a host and nothing a token could leak through; no slash at
    the end."""
    parsed = URL(url.strip())
    if parsed.scheme not in ("http", "https") or not parsed.raw_host:
        raise ValueError("must be an http:// or https:// URL with a host")
    if parsed.raw_user or parsed.raw_password or parsed.raw_query_string or parsed.raw_fragment:
        raise ValueError("must not have user info, a query or a fragment")
    return str(parsed).rstrip("/")


def check_api_version(version: str) -> str:
    """``v24.0``: the Graph API version every path starts with."""
    if not _API_VERSION.fullmatch(version.strip()):
        raise ValueError("must be a Graph API version such as v24.0")
    return version.strip()
