"""``--web.config.file``: /metrics over HTTPS with basic auth, and bad files refused at start."""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import bcrypt
import pytest
import trustme
from aiohttp import web

from whatsapp_support_exporter.output.families import render_target
from whatsapp_support_exporter.output.snapshot import TargetSnapshot
from whatsapp_support_exporter.output.store import Store
from whatsapp_support_exporter.web.app import create_app
from whatsapp_support_exporter.web.webconfig import (
    PROBE_PATHS,
    WebConfigError,
    basic_auth_middleware,
    headers_hook,
    load_web_config,
)

USER = "prometheus"
SECRET = "scrape-me-please"


@pytest.fixture(scope="module")
def hashed() -> str:
    return bcrypt.hashpw(SECRET.encode(), bcrypt.gensalt(4)).decode()


@pytest.fixture
def tls_files(ca: trustme.CA, tmp_path: Path) -> Path:
    """server.crt and server.key for 127.0.0.1 in tmp_path."""
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "server.crt"))
    cert.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    return tmp_path


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "web.yml"
    path.write_text(text)
    return path


@pytest.fixture
async def served(tls_files: Path, hashed: str) -> AsyncIterator[int]:
    """The exporter's web app served as __main__ serves it, per a web config file: its port."""
    path = write(
        tls_files,
        f"tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        f"basic_auth_users:\n  {USER}: '{hashed}'\n",
    )
    config = load_web_config(path)
    store = Store(render_target)
    store.update(TargetSnapshot(name="wa", url="http://wa", up=True, polls=1))
    app = create_app(store, middlewares=[basic_auth_middleware(config.users, PROBE_PATHS)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=config.ssl_context)
    await site.start()
    yield runner.addresses[0][1]
    await runner.cleanup()


@pytest.fixture
async def client(ca: trustme.CA) -> AsyncIterator[aiohttp.ClientSession]:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        yield session


async def test_metrics_over_https_with_the_right_password(
    served: int, client: aiohttp.ClientSession
) -> None:
    for _ in range(2):  # the second answer comes from the verified cache
        async with client.get(
            f"https://127.0.0.1:{served}/metrics", headers=basic(USER, SECRET)
        ) as resp:
            assert resp.status == 200
            assert 'whatsapp_up{target="wa"} 1' in await resp.text()


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(basic(USER, "wrong"), id="wrong-password"),
        pytest.param(basic("admin", SECRET), id="unknown-user"),
        pytest.param({}, id="no-credentials"),
    ],
)
async def test_metrics_without_the_right_credentials_is_401(
    served: int, client: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    for path in ("/metrics", "/", "/-/reload"):
        async with client.get(f"https://127.0.0.1:{served}{path}", headers=headers) as resp:
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"].startswith("Basic")
            assert "whatsapp_up" not in await resp.text()


async def test_a_malformed_authorization_header_is_401(
    served: int, client: aiohttp.ClientSession
) -> None:
    for header in ("Basic !!!not-base64", "Bearer abc", "Basic " + "QQ=="):
        async with client.get(
            f"https://127.0.0.1:{served}/metrics", headers={"Authorization": header}
        ) as resp:
            assert resp.status == 401


async def test_plain_http_to_the_tls_port_gets_no_metrics(served: int) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.get(
                f"http://127.0.0.1:{served}/metrics", headers=basic(USER, SECRET)
            ) as resp:
                await resp.read()


def test_an_htpasswd_style_2y_hash_is_accepted(tmp_path: Path) -> None:
    hashed = bcrypt.hashpw(SECRET.encode(), bcrypt.gensalt(4)).decode().replace("$2b$", "$2y$")
    config = load_web_config(write(tmp_path, f"basic_auth_users:\n  {USER}: '{hashed}'\n"))
    assert config.ssl_context is None
    assert set(config.users) == {USER}


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("tls_server_cfg: {}\n", "unknown key"),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  bogus: 1\n",
            "unknown key",
        ),
        ("tls_server_config:\n  cert_file: missing.crt\n  key_file: server.key\n", "cert_file"),
        ("tls_server_config:\n  cert_file: server.crt\n", "key_file"),
        ("tls_server_config:\n  cert_file: server.key\n  key_file: server.crt\n", "cert_file"),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
            "  min_version: TLS9\n",
            "min_version",
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
            "  client_auth_type: RequireAndVerifyClientCert\n",
            "client_ca_file",
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
            "  cipher_suites: [TLS_AES_128_GCM_SHA256]\n",
            "cipher_suites is not supported here",
        ),
        ("http_server_config:\n  http2: true\n", "http2 must be false"),
        ("http_server_config:\n  headers: {Server: nginx}\n", "header 'Server' cannot be set"),
        (
            "http_server_config:\n  headers: {X-Frame-Options: allow}\n",
            "X-Frame-Options must be one of deny, sameorigin",
        ),
        ("http_server_config:\n  compress: true\n", "unknown key 'compress'"),
        ("basic_auth_users:\n  prometheus: plain-text-password\n", "bcrypt"),
        ("basic_auth_users:\n  prometheus: '$2b$10$tooshort'\n", "bcrypt"),
        ("basic_auth_users:\n  prometheus: 12345\n", "bcrypt"),
        ("basic_auth_users: [prometheus]\n", "basic_auth_users"),
        ("- a list\n", "mapping"),
        ("key: [unclosed\n", "cannot read"),
    ],
    ids=[
        "unknown-top-key",
        "unknown-tls-key",
        "missing-cert",
        "no-key-file",
        "cert-and-key-swapped",
        "bad-tls-version",
        "verify-clients-without-ca",
        "cipher-suites-not-honoured",
        "http2-not-served",
        "header-not-settable",
        "frame-options-bad-value",
        "unknown-http-key",
        "plain-password",
        "truncated-hash",
        "number-as-hash",
        "users-not-a-mapping",
        "not-a-mapping",
        "not-yaml",
    ],
)
def test_a_bad_web_config_is_rejected_with_a_reason(
    tls_files: Path, text: str, complaint: str
) -> None:
    with pytest.raises(WebConfigError, match=complaint) as caught:
        load_web_config(write(tls_files, text))
    assert "plain-text-password" not in str(caught.value)


def test_a_missing_web_config_file_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(WebConfigError, match=r"cannot read .*nope.yml: file not found"):
        load_web_config(tmp_path / "nope.yml")


async def test_configured_headers_are_sent_on_every_response(tmp_path: Path, hashed: str) -> None:
    config = load_web_config(
        write(
            tmp_path,
            "http_server_config:\n  http2: false\n  headers:\n"
            "    x-content-type-options: nosniff\n"
            "    Strict-Transport-Security: max-age=31536000\n"
            "    Content-Security-Policy: ''\n"
            f"basic_auth_users:\n  {USER}: '{hashed}'\n",
        )
    )
    assert config.headers == {
        "X-Content-Type-Options": "nosniff",
        "Strict-Transport-Security": "max-age=31536000",
    }
    store = Store(render_target)
    store.update(TargetSnapshot(name="wa", url="http://wa", up=True, polls=1))
    app = create_app(store, middlewares=[basic_auth_middleware(config.users, PROBE_PATHS)])
    app.on_response_prepare.append(headers_hook(config.headers))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with aiohttp.ClientSession() as session:
            for path, auth, status in [
                ("/metrics", basic(USER, SECRET), 200),
                ("/metrics", {}, 401),
                ("/-/healthy", {}, 200),
                ("/nowhere", basic(USER, SECRET), 404),
            ]:
                async with session.get(base + path, headers=auth) as resp:
                    assert resp.status == status, path
                    assert resp.headers["X-Content-Type-Options"] == "nosniff", path
                    assert resp.headers["Strict-Transport-Security"] == "max-age=31536000"
                    assert "Content-Security-Policy" not in resp.headers
    finally:
        await runner.cleanup()


async def test_wrong_passwords_do_not_stall_an_authorized_scrape(
    tls_files: Path, ca: trustme.CA
) -> None:
    """bcrypt is slow by design; it runs off the event loop so a right password is not queued."""
    slow_hash = bcrypt.hashpw(SECRET.encode(), bcrypt.gensalt(11)).decode()
    config = load_web_config(write(tls_files, f"basic_auth_users:\n  {USER}: '{slow_hash}'\n"))
    app = create_app(Store(render_target), middlewares=[basic_auth_middleware(config.users)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/metrics"
    try:
        async with aiohttp.ClientSession() as session:

            async def get(password: str) -> tuple[int, float]:
                started = time.monotonic()
                async with session.get(url, headers=basic(USER, password)) as resp:
                    return resp.status, time.monotonic() - started

            assert (await get(SECRET))[0] == 200  # verified once, cached from now on
            wrong = [asyncio.create_task(get(f"wrong{i}")) for i in range(6)]
            await asyncio.sleep(0.01)
            status, took = await get(SECRET)
            assert [s for s, _ in await asyncio.gather(*wrong)] == [401] * 6
            assert status == 200
            assert took < 0.1, f"an authorized scrape waited {took:.3f}s behind bcrypt"
    finally:
        await runner.cleanup()


async def test_probes_are_served_without_credentials(
    served: int, client: aiohttp.ClientSession
) -> None:
    """kubelet's httpGet probes send no Authorization header."""
    for path in ("/-/healthy", "/-/ready"):
        async with client.get(f"https://127.0.0.1:{served}{path}") as resp:
            assert resp.status == 200


@pytest.fixture
async def plain(hashed: str) -> AsyncIterator[int]:
    """The app behind basic auth over plain HTTP on loopback: its port."""
    users = {USER: hashed.encode()}
    app = create_app(Store(render_target), middlewares=[basic_auth_middleware(users)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield runner.addresses[0][1]
    await runner.cleanup()


async def raw_status(port: int, authorization: bytes) -> int:
    """Status of GET /metrics with the Authorization header sent byte for byte."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: "
        + authorization
        + b"\r\n\r\n"
    )
    status = await reader.readline()
    writer.close()
    await writer.wait_closed()
    return int(status.split()[1])


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(b"Basic " + base64.b64encode(f"{USER}:{'x' * 73}".encode()), id="73-bytes"),
        pytest.param(
            b"Basic " + base64.b64encode(f"{USER}:{SECRET}".encode() + b"\xff" * 80),
            id="secret-then-long-tail",
        ),
        pytest.param(b"Basic " + base64.b64encode(b"\xff\xfe:\xff"), id="0xff-in-credentials"),
        pytest.param("Basic pässwörd".encode(), id="non-ascii-utf8-header"),
        pytest.param(b"Basic \xff\xfe\xfd", id="0xff-in-header"),
        pytest.param(b"Basic " + base64.b64encode(USER.encode()), id="no-colon"),
        pytest.param(b"Basic abc", id="bad-padding"),
        pytest.param(b"Basic " + base64.b64encode(f"{USER}:a\0b".encode()), id="nul-byte"),
        pytest.param(b"Basic", id="no-token"),
    ],
)
async def test_a_hostile_authorization_header_is_401_not_500(
    plain: int, authorization: bytes
) -> None:
    assert await raw_status(plain, authorization) == 401


async def test_a_flood_of_wrong_passwords_does_not_delay_a_first_time_user(
    tls_files: Path,
) -> None:
    """300 wrong passwords at once: bcrypt work is bounded and the rest are turned away at once."""
    slow_hash = bcrypt.hashpw(SECRET.encode(), bcrypt.gensalt(10)).decode()
    config = load_web_config(write(tls_files, f"basic_auth_users:\n  {USER}: '{slow_hash}'\n"))
    app = create_app(Store(render_target), middlewares=[basic_auth_middleware(config.users)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/metrics"
    try:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def get(password: str) -> tuple[int, float]:
                started = time.monotonic()
                async with session.get(url, headers=basic(USER, password)) as resp:
                    return resp.status, time.monotonic() - started

            flood = [asyncio.create_task(get(f"wrong{i}")) for i in range(300)]
            await asyncio.sleep(0.05)
            status, took = await get(SECRET)
            statuses = [s for s, _ in await asyncio.gather(*flood)]
            assert status in (200, 429)  # never stuck behind 300 bcrypt checks
            # behind 300 checks would be 15 s; the bounded queue's share of them stays under 2 s
            # (uvloop brings the flood in faster than asyncio's loop: more of it is queued)
            assert took < 2.0, f"a first-time user waited {took:.2f}s"
            # only the checks that fit the bounded queue while the flood arrived were verified
            # (10 at once; the flood takes a while to connect), the rest turned away at once
            assert set(statuses) <= {401, 429} and statuses.count(401) <= 60
            assert statuses.count(429) >= 200
            assert (await get(SECRET))[0] == 200
            status, took = await get(SECRET)
            assert status == 200 and took < 0.1  # from the cache
    finally:
        await runner.cleanup()
