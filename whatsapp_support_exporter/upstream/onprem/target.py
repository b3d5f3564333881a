"""One On-Premises client to poll: its URL, name, credentials and TLS options.

Shared by the settings (``WA_TARGETS`` and the environment's credentials) and the configuration
file (named auths, target files). Secret files are checked at start and read again on every use
(``Credentials``), so a rotated Kubernetes Secret takes effect without a restart.
"""

from __future__ import annotations

import dataclasses
import re
import ssl
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr
from yarl import URL

API_KEY_LENGTH = (12, 128)
SUPPORT_PATH = "/v1/support"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class SecretFileError(Exception):
    """A secret file that cannot be used; the text names the file, never its content."""


def _read_secret(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as err:
        raise SecretFileError(f"cannot read {path}: {err.__class__.__name__}") from None


def check_api_key(key: str) -> None:
    """Meta's Webapp accepts keys of 12 to 128 characters; anything else can never work.

    A control character (a newline left inside a key) would also break the HTTP header.
    """
    low, high = API_KEY_LENGTH
    if not low <= len(key) <= high:
        raise ValueError(f"must be {low} to {high} characters long (got {len(key)})")
    if _CONTROL.search(key):
        raise ValueError("must not contain a newline or another control character")


def read_api_key_file(path: Path) -> str:
    """The key in ``path``, stripped and checked; SecretFileError (naming only the file) if not."""
    key = _read_secret(path)
    try:
        check_api_key(key)
    except ValueError as err:
        raise SecretFileError(f"{path} holds no usable API key: {err}") from None
    return key


def read_password_file(path: Path) -> str:
    """The password in ``path``, stripped; an empty file is an error (a Secret not yet filled)."""
    password = _read_secret(path)
    if not password:
        raise SecretFileError(f"{path} is empty")
    return password


@dataclass(frozen=True)
class Credentials:
    """How to authenticate to a target: inline secrets and secret file paths, never contents.

    Compared by value (a reload keeps a target whose credentials did not change); the files are
    read anew on each ``read_*`` call so that a rotated secret is picked up.
    """

    api_key: SecretStr | None = None
    api_key_file: Path | None = None
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None

    def read_api_key(self) -> str | None:
        if self.api_key_file is not None:
            return read_api_key_file(self.api_key_file)
        return self.api_key.get_secret_value() if self.api_key is not None else None

    def read_password(self) -> str | None:
        if self.password_file is not None:
            return read_password_file(self.password_file)
        return self.password.get_secret_value() if self.password is not None else None

    @property
    def has_api_key(self) -> bool:
        return self.api_key is not None or self.api_key_file is not None

    @property
    def can_login(self) -> bool:
        return self.username is not None and (
            self.password is not None or self.password_file is not None
        )

    @property
    def configured(self) -> bool:
        return self.has_api_key or self.can_login


@dataclass(frozen=True)
class TLSOptions:
    """How to check a target's certificate."""

    verify: bool = True
    ca_file: Path | None = None


def check_ca_file(path: Path) -> None:
    """Load the bundle now: a bad one found at the first poll would fail every poll as ``tls``."""
    if not path.is_file():
        raise ValueError(f"{path} is not a readable file")
    try:
        ssl.create_default_context(cafile=str(path))
    except (OSError, ValueError) as err:  # ssl.SSLError is an OSError
        raise ValueError(
            f"{path} holds no usable CA certificate ({err.__class__.__name__})"
        ) from None


def normalize_url(url: str) -> tuple[str, str, bool]:
    """A target URL checked and cleaned: (url without trailing slash, default name, stripped).

    A URL pasted with the endpoint (``.../v1/support``) is accepted; the endpoint is stripped
    and ``stripped`` is True so that a warning can say so.
    """
    url = url.strip()
    parsed = URL(url)
    raw_host = parsed.raw_host  # .host decodes IDNA: slow, and only IDN names need it
    if parsed.scheme not in ("http", "https") or not raw_host:
        raise ValueError(f"{_redact(url)!r} is not an http:// or https:// URL with a host")
    if parsed.raw_user or parsed.raw_password:
        raise ValueError(
            "credentials in a target URL are not allowed; use WA_USERNAME/WA_PASSWORD"
            " or an auth of the configuration file"
        )
    if parsed.raw_query_string or parsed.raw_fragment:
        raise ValueError(f"{_redact(url)!r} must not have a query or fragment")
    host = (parsed.host or raw_host) if "xn--" in raw_host else raw_host
    host = f"[{host}]" if ":" in host else host
    clean = str(parsed).rstrip("/")
    stripped = clean.endswith(SUPPORT_PATH)
    if stripped:
        clean = clean.removesuffix(SUPPORT_PATH).rstrip("/")
    return clean, f"{host}:{parsed.explicit_port or parsed.port}", stripped


@dataclass(frozen=True)
class Target:
    """One upstream WhatsApp Business API client (a single instance or a cluster's Webapp)."""

    name: str
    url: str
    credentials: Credentials = Credentials()
    tls: TLSOptions = TLSOptions()
    labels: tuple[tuple[str, str], ...] = ()  # sorted; exported on whatsapp_target_info
    # The URL was given with /v1/support at its end (stripped); only for a warning.
    support_path_stripped: bool = dataclasses.field(default=False, compare=False, repr=False)

    @classmethod
    def parse(cls, text: str) -> Target:
        """Parse ``name=url`` or ``url`` (the name then defaults to ``host:port``)."""
        name, sep, url = text.strip().partition("=")
        if not sep:
            name, url = "", text.strip()
        clean, default_name, stripped = normalize_url(url)
        return cls(name=name.strip() or default_name, url=clean, support_path_stripped=stripped)


def _redact(url: str) -> str:
    """A URL fit for an error message: no user info, no query, no fragment (they may be secret)."""
    url = re.sub(r"^([^@/]*://)?[^@/]*@", r"\1***@", url)
    return re.split(r"[?#]", url, maxsplit=1)[0]
