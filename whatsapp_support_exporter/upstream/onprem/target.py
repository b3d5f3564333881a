"""One On-Premises client to poll: its URL, name, credentials and TLS options.

Shared by the settings (``WA_TARGETS`` and the environment's credentials) and the configuration
file (named auths, target files). Secret files are checked at start and read again on every use
(``Credentials``), so a rotated Kubernetes Secret takes effect without a restart.
"""

from __future__ import annotations

import dataclasses
import errno
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, SecretStr, ValidationInfo
from yarl import URL

API_KEY_LENGTH = (12, 128)
SUPPORT_PATH = "/v1/support"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class SecretFileError(Exception):
    """A secret file that cannot be used; the text names the file, never its content."""


_OS_PROBLEMS = {
    errno.ENOENT: "file not found",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EISDIR: "is a directory, not a file",
    errno.ENOTDIR: "file not found",
}


def file_problem(err: OSError | UnicodeDecodeError) -> str:
    """What an operator can act on ("file not found"), not a Python class name."""
    if isinstance(err, UnicodeDecodeError):
        return "not UTF-8 text"
    if err.errno in _OS_PROBLEMS:
        return _OS_PROBLEMS[err.errno]
    return (err.strerror or "cannot be read").lower()


def _read_secret(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as err:
        raise SecretFileError(f"cannot read {path}: {file_problem(err)}") from None


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


def resolved(path: Path, info: ValidationInfo) -> Path:
    """Relative paths are relative to the configuration file (its folder is the context's
    ``base``), as in Prometheus; without a base, as given."""
    base = (info.context or {}).get("base")
    return path if path.is_absolute() or base is None else Path(base) / path


def _usable_api_key(key: SecretStr) -> SecretStr:
    check_api_key(key.get_secret_value())
    return key


def _usable_api_key_file(path: Path, info: ValidationInfo) -> Path:
    path = resolved(path, info)
    try:
        read_api_key_file(path)
    except SecretFileError as err:
        raise ValueError(str(err)) from None
    return path


def _usable_password_file(path: Path, info: ValidationInfo) -> Path:
    path = resolved(path, info)
    try:
        read_password_file(path)
    except SecretFileError as err:
        raise ValueError(str(err)) from None
    return path


# The credential fields of the settings and of an auth of the configuration file: checked at
# start with the same rules, so a key that can never work is refused before the first poll.
ApiKey = Annotated[SecretStr, AfterValidator(_usable_api_key)]
ApiKeyFile = Annotated[Path, AfterValidator(_usable_api_key_file)]
PasswordFile = Annotated[Path, AfterValidator(_usable_password_file)]


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

    @classmethod
    def of(cls, source: object) -> Credentials:
        """The credentials held by a model with the same five fields (settings, an auth)."""
        return cls(**{f.name: getattr(source, f.name) for f in dataclasses.fields(cls)})

    def problem(self, name: Callable[[str], str]) -> tuple[str, str] | None:
        """(field at fault, message) when the fields contradict each other; ``name`` says how
        the operator spells a field (``WA_API_KEY`` or ``api_key``)."""
        if self.api_key is not None and self.api_key_file is not None:
            return (
                "api_key_file",
                f"{name('api_key')} and {name('api_key_file')} are both set; keep one",
            )
        if self.password is not None and self.password_file is not None:
            return (
                "password_file",
                f"{name('password')} and {name('password_file')} are both set; keep one",
            )
        has_password = self.password is not None or self.password_file is not None
        if self.username is not None and not has_password:
            return "username", (
                f"{name('username')} needs {name('password')} or {name('password_file')}"
            )
        if self.username is None and has_password:
            return "username", f"a password is set but {name('username')} is not"
        return None


@dataclass(frozen=True)
class TLSOptions:
    """How to check a target's certificate."""

    verify: bool = True
    ca_file: Path | None = None


def check_ca_file(path: Path) -> None:
    """Load the bundle now: a bad one found at the first poll would fail every poll as ``tls``."""
    try:
        with path.open("rb"):
            pass
    except OSError as err:
        raise ValueError(f"{path}: {file_problem(err)}") from None
    try:
        ssl.create_default_context(cafile=str(path))
    except (OSError, ValueError):  # ssl.SSLError is an OSError
        raise ValueError(f"{path} holds no usable CA certificate (PEM)") from None


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
    def at(
        cls,
        url: str,
        name: str | None = None,
        credentials: Credentials = Credentials(),
        tls: TLSOptions = TLSOptions(),
        labels: tuple[tuple[str, str], ...] = (),
    ) -> Target:
        """The target at ``url`` (checked and cleaned), named ``host:port`` unless ``name``."""
        clean, default_name, stripped = normalize_url(url)
        return cls(
            name=name or default_name,
            url=clean,
            credentials=credentials,
            tls=tls,
            labels=labels,
            support_path_stripped=stripped,
        )

    @classmethod
    def parse(
        cls,
        text: str,
        credentials: Credentials = Credentials(),
        tls: TLSOptions = TLSOptions(),
        labels: tuple[tuple[str, str], ...] = (),
    ) -> Target:
        """Parse ``name=url`` or ``url`` (the name then defaults to ``host:port``)."""
        name, sep, url = text.strip().partition("=")
        if not sep:
            name, url = "", text
        return cls.at(url, name.strip() or None, credentials, tls, labels)

    @property
    def default_named(self) -> bool:
        """Named ``host:port`` after its URL (two URLs on one host then need names)."""
        return self.name == normalize_url(self.url)[1]


def duplicate_hint(target: Target) -> str:
    """Said when a target's name is taken: how to tell two URLs on one host apart."""
    if target.default_named:
        return " (a name defaults to host:port: name each target, name=url or name:)"
    return ""


def _redact(url: str) -> str:
    """A URL fit for an error message: no user info, no query, no fragment (they may be secret)."""
    url = re.sub(r"^([^@/]*://)?[^@/]*@", r"\1***@", url)
    return re.split(r"[?#]", url, maxsplit=1)[0]
