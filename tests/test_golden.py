"""The exact /metrics text for fixed payloads of every shape, compared with a golden file.

Regenerate after an intended change with ``UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py``
and read the diff: every changed line is a change users' dashboards will see.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from whatsapp_support_exporter.output import families, family
from whatsapp_support_exporter.output.exposition import Exposition
from whatsapp_support_exporter.output.families import exporter_pieces, render_target
from whatsapp_support_exporter.output.snapshot import TargetSnapshot
from whatsapp_support_exporter.output.store import Store
from whatsapp_support_exporter.upstream.onprem.support import parse_support

HERE = Path(__file__).parent
GOLDEN = HERE / "golden" / "exposition.prom"
GOLDEN_OM = HERE / "golden" / "exposition.openmetrics"
RECEIVED_AT = 1_795_262_400.0  # 2026-11-21T12:00:00Z


def golden_store() -> Store:
    """Three targets polled once each from the payload files, plus one that is down."""
    store = Store(render_target)
    store.set_exporter_pieces(exporter_pieces())
    for name in ("single", "ha", "multiconnect"):
        support = parse_support((HERE / "payloads" / f"{name}.json").read_bytes())
        invalid: dict[str, int] = {}
        for field in support.invalid_fields:
            invalid[field] = invalid.get(field, 0) + 1
        snap = TargetSnapshot(
            name=name,
            url=f"https://{name}.example:9090",
            with_logins=True,
            up=True,
            support=support,
            received_at=RECEIVED_AT,
            last_success=RECEIVED_AT,
            last_duration=0.25,
            polls=3,
            errors={"timeout": 2},
            logins={"success": 1},
            invalid_fields=invalid,
        )
        store.update(snap)
    down = TargetSnapshot(
        name="down",
        url="https://down.example:9090",
        with_logins=True,
        polls=4,
        last_duration=10.0,
        errors={"connect": 4},
    )
    store.update(down)
    return store


def render(openmetrics: bool) -> str:
    exposition = Exposition(golden_store(), registry=CollectorRegistry())
    return exposition.render(openmetrics=openmetrics).decode()


@pytest.mark.parametrize(
    ("openmetrics", "golden"), [(False, GOLDEN), (True, GOLDEN_OM)], ids=["text", "openmetrics"]
)
def test_exposition_matches_the_golden_file(openmetrics: bool, golden: Path) -> None:
    text = render(openmetrics)
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()


def test_promtool_accepts_the_golden_exposition(require_tool: object) -> None:
    result = subprocess.run(
        [shutil.which("promtool") or "promtool", "check", "metrics"],
        input=GOLDEN.read_bytes(),
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_openmetrics_output_parses_with_the_reference_parser() -> None:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    families = {f.name: f for f in text_string_to_metric_families(GOLDEN_OM.read_text())}  # type: ignore[no-untyped-call]
    assert families["whatsapp_exporter_polls"].type == "counter"
    assert families["whatsapp_socket_state"].type == "gauge"


def test_the_edge_cases_show_in_the_exposition_as_documented() -> None:
    text = GOLDEN.read_text()
    # an undocumented state and role get a series of their own
    assert 'state="CONNECTING_v2"} 1' in text
    assert 'role="standby_coreapp"} 1' in text
    # [[1, 3]] owns three shards
    assert (
        'whatsapp_shards_owned{target="multiconnect",host="mc-core-1",container_id="000000000003"} 3'
        in text
    )
    # a wrong-typed field is counted and the rest of its container exported
    assert (
        'whatsapp_exporter_invalid_fields_total{target="multiconnect",field="free_space"} 1' in text
    )
    assert (
        'whatsapp_build_info{target="multiconnect",host="mc-core-1",container_id="000000000003",version="v2.54.0"'
        in text
    )
    # label values are escaped
    assert 'description="build \\"quoted\\" \\\\ path"' in text
    # clock skew: the container is 30 s behind the exporter
    assert (
        'whatsapp_clock_skew_seconds{target="multiconnect",host="mc-core-0",container_id="000000000002"} -30'
        in text
    )
    # a down target keeps its poll series and has no data series
    assert 'whatsapp_up{target="down"} 0' in text
    assert not any(
        'target="down"' in line for line in text.splitlines() if line.startswith("whatsapp_free")
    )
    for secret in ("hunter2", "do-not-export-me", "+15550100123"):
        assert secret not in text


@pytest.mark.parametrize(
    ("device", "skew"),
    [
        ("2026-11-21T12:00:00Z", "0"),
        ("2026-11-21T12:00:03Z", "3"),
        ("2026-11-21T12:00:00.400Z", "-0.5"),
    ],
)
def test_clock_skew_of_a_whole_second_clock_has_no_rounding_bias(device: str, skew: str) -> None:
    support = parse_support(b'{"support": {"device_iso8601": "%s"}}' % device.encode())
    snap = TargetSnapshot(
        name="t", url="http://t", up=True, support=support, received_at=RECEIVED_AT + 0.9
    )
    assert (
        f'whatsapp_clock_skew_seconds{{target="t"}} {skew}\n'
        in render_target(snap)["whatsapp_clock_skew_seconds"]
    )


def test_a_family_given_the_wrong_number_of_label_values_fails_the_render_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A developer's slip in the family table (a sample without its ``directory``) is an error,
    not series that quietly lack a label."""
    support = parse_support((HERE / "payloads" / "single.json").read_bytes())
    snap = TargetSnapshot(name="single", url="http://x", up=True, support=support)
    plan = list(families._CONTAINER_PLAN)
    family, name, arity, _ = plan[0]
    assert name == "whatsapp_free_space_bytes"
    plan[0] = (family, name, arity, lambda c, _: [((), 1.0)])
    monkeypatch.setattr(families, "_CONTAINER_PLAN", tuple(plan))
    with pytest.raises(
        ValueError, match=r"whatsapp_free_space_bytes takes labels \('directory',\)"
    ):
        render_target(snap)


def test_a_per_target_family_given_the_wrong_number_of_label_values_fails_the_render(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        families,
        "LOGINS",
        family.Family("whatsapp_exporter_logins_total", family.COUNTER, "h"),
    )
    with pytest.raises(ValueError, match="whatsapp_exporter_logins_total takes labels"):
        render_target(TargetSnapshot(name="t", url="http://x", with_logins=True))
