"""The `evorl` command: every engine command (evorl_core.cli), and `evorl report RUN`, which writes
a run's HTML report with the dashboard's own figures (evorl_ui.report). The engine never imports
the dashboard, so this one command lives here, parsed by the engine's own parser."""

from __future__ import annotations

import sys

from evorl_core import cli as engine
from evorl_ui import report


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] != ["report"]:
        return engine.main(argv)
    args = engine.build_parser().parse_args(argv)
    try:
        path = report.write_report(report.resolve_run(args.run, args.runs_dir), args.out)
    except (ValueError, OSError) as exc:
        print(f"evorl report: error: {exc}", file=sys.stderr)
        return 2
    print(f"report written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
