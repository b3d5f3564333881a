"""TLS to the upstream, with certificates made at test time (trustme)."""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme
from aiohttp.test_utils import TestServer

from tests.conftest import HarnessFactory
from whatsapp_api_simulator.onprem import Simulator


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
async def https_base(sim: Simulator, ca: trustme.CA) -> AsyncIterator[str]:
    """The simulator over HTTPS with a certificate for ``localhost`` issued by the test CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    server = TestServer(sim.app(), host="127.0.0.1")
    await server.start_server(ssl=context)
    yield f"https://localhost:{server.port}"
    await server.close()


async def test_https_upstream_with_its_ca_file_is_polled(
    harness: HarnessFactory, sim: Simulator, https_base: str, ca_file: Path
) -> None:
    sim.add_instance("wa", "single")
    h = harness("wa", url=f"{https_base}/wa", tls_ca_file=ca_file)
    await h.poll()
    assert h.snapshot.up, h.snapshot.last_error_detail
    assert 'whatsapp_socket_connected{target="wa"}' in h.metrics()


async def test_untrusted_certificate_is_a_tls_error_that_says_so(
    harness: HarnessFactory, sim: Simulator, https_base: str
) -> None:
    sim.add_instance("wa", "single")
    h = harness("wa", url=f"{https_base}/wa")
    await h.poll()
    assert h.snapshot.last_error == "tls"
    assert "certificate" in h.snapshot.last_error_detail
    assert sim.instance("wa").requests["support"] == 0
    assert 'reason="tls"} 1' in h.metrics()


async def test_certificate_for_another_host_name_is_a_tls_error(
    harness: HarnessFactory, sim: Simulator, https_base: str, ca_file: Path
) -> None:
    sim.add_instance("wa", "single")
    url = https_base.replace("localhost", "127.0.0.1")  # the certificate names only localhost
    h = harness("wa", url=f"{url}/wa", tls_ca_file=ca_file)
    await h.poll()
    assert h.snapshot.last_error == "tls"


async def test_verification_off_polls_a_self_signed_upstream_and_warns(
    harness: HarnessFactory, sim: Simulator, https_base: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    sim.add_instance("wa", "single")
    h = harness("wa", url=f"{https_base}/wa", tls_verify=False)
    await h.poll()
    assert h.snapshot.up, h.snapshot.last_error_detail
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("verification" in r.getMessage() for r in warnings)


async def test_https_to_a_plain_http_port_is_a_tls_error(
    harness: HarnessFactory, sim: Simulator, sim_base: str
) -> None:
    sim.add_instance("wa", "single")
    h = harness("wa", url=sim_base.replace("http://", "https://") + "/wa")
    await h.poll()
    assert h.snapshot.last_error == "tls", h.snapshot.last_error_detail
