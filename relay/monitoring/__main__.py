"""``python -m relay.monitoring [ROOT]``: regenerate the files under deploy/ and docs/ that
are built from code (``make dashboards`` runs it from the repository root, the default)."""

from __future__ import annotations

import argparse
from pathlib import Path

from relay.monitoring import alerts, dashboard, metrics_doc


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m relay.monitoring",
        description="Write deploy/prometheus/alerts.yml, deploy/grafana/relay-dashboard.json "
        "and docs/METRICS.md from the code that defines them.",
    )
    parser.add_argument(
        "root", nargs="?", type=Path, default=Path.cwd(), help="the repository (default: .)"
    )
    root = parser.parse_args(argv).root
    if not (root / "relay" / "monitoring").is_dir():
        parser.error(f"{root} is not the relay repository (no relay/monitoring in it)")
    for written in (alerts.write(root), dashboard.write(root), metrics_doc.write(root)):
        print(written)


if __name__ == "__main__":
    main()
