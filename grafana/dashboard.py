"""The Grafana dashboard, built with Grafana's own foundation SDK (see ``whatsapp_dashboard``).

Regenerate the committed JSON after a change (a test fails while it is out of date)::

    python grafana/dashboard.py > grafana/whatsapp-support-exporter.json

One dashboard serves every deployment (a sidecar per Webapp, a central exporter, sharded
replicas): queries keep ``job, instance, target`` apart, so two sidecars that both name their
target "local" never merge, and totals over containers take ``max`` per container first, so two
HA sidecars exporting the same cluster never count it twice.
"""

from __future__ import annotations

import json
import sys

from whatsapp_dashboard.board import build


def main() -> None:
    json.dump(build(), sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
