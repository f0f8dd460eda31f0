"""``python -m relay.monitoring [ROOT]``: regenerate the files under deploy/ and docs/ that
are built from code (``make dashboards`` runs it from the repository root, the default)."""

from __future__ import annotations

import sys
from pathlib import Path

from relay.monitoring import alerts, dashboard, metrics_doc


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    root = Path(args[0]) if args else Path.cwd()
    for written in (alerts.write(root), dashboard.write(root), metrics_doc.write(root)):
        print(written)


if __name__ == "__main__":
    main()
