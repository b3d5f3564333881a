"""``--web.config.file``: TLS, basic auth and response headers for our own endpoint, in the
exporter-toolkit format.

Only the parts this exporter honours are accepted; an unknown key, a key it would ignore
(``cipher_suites``, ``http2: true``) or a bad file stops the program at start rather than serving
/metrics less protected than the operator believes.

    tls_server_config:
      cert_file: server.crt
      key_file: server.key
      client_ca_file: ca.crt              # optional
      client_auth_type: RequireAndVerifyClientCert   # optional
      min_version: TLS12                  # optional
      max_version: TLS13                  # optional
      prefer_server_cipher_suites: true   # optional
    http_server_config:
      headers:                            # optional, sent on every response
        Strict-Transport-Security: max-age=31536000
        X-Content-Type-Options: nosniff
    basic_auth_users:
      prometheus: $2y$10$...              # bcrypt hash
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import os
import re
import ssl
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import yaml
from aiohttp import web

from whatsapp_support_exporter.upstream.onprem.target import file_problem

_TLS_KEYS = {
    "cert_file",
    "key_file",
    "client_ca_file",
    "client_auth_type",
    "min_version",
    "max_version",
    "prefer_server_cipher_suites",
}
# exporter-toolkit keys that Python's ssl module cannot honour as Go does: refused, not ignored.
_TLS_UNHONOURED = {
    "cipher_suites": "Go's cipher suite names",
    "curve_preferences": "Go's curve names",
    "cert": "inline certificates (use cert_file)",
    "key": "inline keys (use key_file)",
    "client_ca": "an inline client CA (use client_ca_file)",
    "client_allowed_sans": "client SAN matching",
}
# The headers exporter-toolkit lets a web config set, with the values it accepts (None: any).
_HEADERS: dict[str, frozenset[str] | None] = {
    "Content-Security-Policy": None,
    "X-Frame-Options": frozenset({"deny", "sameorigin"}),
    "X-Content-Type-Options": frozenset({"nosniff"}),
    "X-XSS-Protection": None,
    "Strict-Transport-Security": None,
}
_CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_OPTIONAL,
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}


# $2a$/$2b$/$2y$, a two-digit cost, then 22 characters of salt and 31 of hash: a hash bcrypt
# would reject at the first request is rejected at start instead.
_BCRYPT = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")


class WebConfigError(ValueError):
    """The web config file cannot be used; the message says why (never a hash or key)."""


@dataclass
class WebConfig:
    ssl_context: ssl.SSLContext | None = None
    users: dict[str, bytes] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)  # sent on every response


def load_web_config(path: Path) -> WebConfig:
    """Read and check the file; every referenced file must exist and load."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as err:
        raise WebConfigError(f"cannot read {path}: {file_problem(err)}") from None
    except UnicodeDecodeError:
        raise WebConfigError(f"cannot read {path}: not UTF-8 text") from None
    except yaml.YAMLError:
        raise WebConfigError(f"cannot read {path}: not valid YAML") from None
    if not isinstance(raw, dict):
        raise WebConfigError("must be a YAML mapping")
    unknown = set(raw) - {"tls_server_config", "basic_auth_users", "http_server_config"}
    if unknown:
        raise WebConfigError(f"unknown key {sorted(unknown)[0]!r}")
    config = WebConfig(headers=_headers(raw.get("http_server_config")))
    tls = raw.get("tls_server_config")
    if tls is not None:
        config.ssl_context = _ssl_context(tls, path.parent)
    users = raw.get("basic_auth_users") or {}
    if not isinstance(users, dict):
        raise WebConfigError("basic_auth_users must be a mapping of user to bcrypt hash")
    for user, hashed in users.items():
        if not isinstance(hashed, str) or not _BCRYPT.fullmatch(hashed):
            raise WebConfigError(f"basic_auth_users: the password of {user!r} is not a bcrypt hash")
        config.users[str(user)] = hashed.encode()
    return config


def _headers(http: Any) -> dict[str, str]:
    """``http_server_config``: the headers to send (blank ones unset); HTTP/2 is never served."""
    if http is None:
        return {}
    if not isinstance(http, dict):
        raise WebConfigError("http_server_config must be a mapping")
    unknown = set(http) - {"headers", "http2"}
    if unknown:
        raise WebConfigError(f"http_server_config: unknown key {sorted(unknown)[0]!r}")
    if http.get("http2") not in (None, False):
        raise WebConfigError(
            "http_server_config: http2 must be false or left out (this exporter serves HTTP/1.1)"
        )
    headers = http.get("headers") or {}
    if not isinstance(headers, dict):
        raise WebConfigError("http_server_config: headers must be a mapping of name to value")
    chosen = {}
    for name, value in headers.items():
        known = next((h for h in _HEADERS if h.lower() == str(name).lower()), None)
        if known is None:
            raise WebConfigError(
                f"http_server_config: header {name!r} cannot be set (only {', '.join(_HEADERS)})"
            )
        if value is None or value == "":
            continue
        if not isinstance(value, str) or re.search(r"[\x00-\x1f\x7f]", value):
            raise WebConfigError(f"http_server_config: {known} must be a one-line string")
        accepted = _HEADERS[known]
        if accepted is not None and value.lower() not in accepted:
            raise WebConfigError(
                f"http_server_config: {known} must be one of {', '.join(sorted(accepted))}"
            )
        chosen[known] = value
    return chosen


def headers_hook(
    headers: dict[str, str],
) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """An ``on_response_prepare`` signal handler that sends ``headers`` on every response."""

    async def add(request: web.Request, response: web.StreamResponse) -> None:
        response.headers.update(headers)

    return add


def _ssl_context(tls: Any, base: Path) -> ssl.SSLContext:
    if not isinstance(tls, dict):
        raise WebConfigError("tls_server_config must be a mapping")
    unhonoured = sorted(set(tls) & set(_TLS_UNHONOURED))
    if unhonoured:
        key = unhonoured[0]
        raise WebConfigError(
            f"tls_server_config: {key} is not supported here ({_TLS_UNHONOURED[key]}); remove it"
        )
    unknown = set(tls) - _TLS_KEYS
    if unknown:
        raise WebConfigError(f"tls_server_config: unknown key {sorted(unknown)[0]!r}")
    if not tls.get("cert_file") or not tls.get("key_file"):
        raise WebConfigError("tls_server_config needs cert_file and key_file")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(base / tls["cert_file"], base / tls["key_file"])
    except ssl.SSLError:  # an OSError too: first
        raise WebConfigError(
            "tls_server_config: cannot load cert_file/key_file: not PEM, or they do not match"
        ) from None
    except OSError as err:
        raise WebConfigError(
            f"tls_server_config: cannot load cert_file/key_file: {file_problem(err)}"
        ) from None
    auth_type = tls.get("client_auth_type", "NoClientCert")
    if auth_type not in _CLIENT_AUTH:
        raise WebConfigError(f"tls_server_config: unknown client_auth_type {auth_type!r}")
    context.verify_mode = _CLIENT_AUTH[auth_type]
    if tls.get("client_ca_file"):
        try:
            context.load_verify_locations(base / tls["client_ca_file"])
        except ssl.SSLError:
            raise WebConfigError(
                "tls_server_config: cannot load client_ca_file: no PEM certificate in it"
            ) from None
        except OSError as err:
            raise WebConfigError(
                f"tls_server_config: cannot load client_ca_file: {file_problem(err)}"
            ) from None
    elif auth_type in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert"):
        raise WebConfigError(
            f"tls_server_config: client_auth_type {auth_type} needs client_ca_file"
        )
    for key, attr in (("min_version", "minimum_version"), ("max_version", "maximum_version")):
        if key in tls:
            if tls[key] not in _VERSIONS:
                raise WebConfigError(f"tls_server_config: unknown {key} {tls[key]!r}")
            setattr(context, attr, _VERSIONS[tls[key]])
    prefer = tls.get("prefer_server_cipher_suites", True)  # exporter-toolkit's default
    if not isinstance(prefer, bool):
        raise WebConfigError("tls_server_config: prefer_server_cipher_suites must be true or false")
    if prefer:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    return context


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# The paths kubelet probes without credentials.
PROBE_PATHS = frozenset({"/-/healthy", "/-/ready"})
# bcrypt checks running at once (one per core is all they can use) and waiting beyond those;
# a request that finds the queue full is answered 429 at once instead of waiting its turn.
BCRYPT_CONCURRENCY = 2
BCRYPT_QUEUE = 8
# Verified credentials kept so that a scrape costs one bcrypt check per process, not per scrape.
CACHE_SIZE = 100
# bcrypt reads at most 72 bytes; Go's bcrypt (exporter-toolkit) refuses longer passwords.
_MAX_PASSWORD_BYTES = 72
_CHALLENGE = {"WWW-Authenticate": 'Basic realm="whatsapp-support-exporter"'}


def basic_auth_middleware(
    users: dict[str, bytes],
    open_paths: frozenset[str] = frozenset(),
    *,
    concurrency: int = BCRYPT_CONCURRENCY,
    queue: int = BCRYPT_QUEUE,
) -> Any:
    """Require a configured user on every path but ``open_paths``.

    bcrypt is slow by design: checks run in a small thread pool of their own, at most
    ``concurrency`` at once with ``queue`` more waiting, so a flood of wrong passwords costs
    bounded CPU and answers 429 beyond the queue; verified credentials are cached (keyed by a
    keyed hash of user and password, never the password) so a known scraper skips the queue.
    """
    key = os.urandom(32)
    verified: dict[bytes, None] = {}  # insertion-ordered: the oldest is evicted first
    slots = asyncio.Semaphore(concurrency)
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="bcrypt")
    waiting = 0

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        nonlocal waiting
        if request.path in open_paths:
            return await handler(request)
        credentials = _credentials(request.headers.get("Authorization", ""))
        if credentials is None:
            raise web.HTTPUnauthorized(headers=_CHALLENGE)
        user, password = credentials
        digest = hmac.new(key, user + b"\0" + password, hashlib.sha256).digest()
        if digest in verified:
            return await handler(request)
        if waiting >= concurrency + queue:
            raise web.HTTPTooManyRequests(headers={"Retry-After": "1"})
        waiting += 1
        try:
            async with slots:
                loop = asyncio.get_running_loop()
                ok = await loop.run_in_executor(pool, _check, user, password, users)
        finally:
            waiting -= 1
        if not ok:
            raise web.HTTPUnauthorized(headers=_CHALLENGE)
        if len(verified) >= CACHE_SIZE:
            del verified[next(iter(verified))]
        verified[digest] = None
        return await handler(request)

    return middleware


def _credentials(header: str) -> tuple[bytes, bytes] | None:
    """User and password of a well-formed Basic header, as bytes; None for anything else."""
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded.isascii():
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except ValueError:  # binascii.Error is a ValueError
        return None
    user, colon, password = decoded.partition(b":")
    if not colon:
        return None
    return user, password


def _check(user: bytes, password: bytes, users: dict[str, bytes]) -> bool:
    """bcrypt verification; any password bcrypt cannot take is a wrong password, never an error."""
    try:
        hashed = users.get(user.decode())
    except UnicodeDecodeError:
        hashed = None
    if len(password) > _MAX_PASSWORD_BYTES:
        return False
    try:
        if hashed is None:
            # spend the time of a real check so that user names cannot be probed by timing
            bcrypt.checkpw(password, _dummy_hash())
            return False
        return bcrypt.checkpw(password, hashed.replace(b"$2y$", b"$2b$", 1))
    except ValueError:
        return False


@functools.cache
def _dummy_hash() -> bytes:
    return bcrypt.hashpw(b"unused", bcrypt.gensalt(10))
