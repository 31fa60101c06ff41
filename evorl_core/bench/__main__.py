"""`python -m evorl_core.bench`: the options of `evorl bench` plus --backend, and the hidden
--worker mode in which harness.run_worker runs one section in a fresh process."""

from __future__ import annotations

import argparse
import json
import sys

from evorl_core.bench import __doc__ as BENCH_DOC
from evorl_core.bench import main
from evorl_core.bench.harness import RESULT_MARK, WORKERS
from evorl_core.bench.plan import SECTIONS


def _cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evorl_core.bench", description=BENCH_DOC.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="bench-results/bench.json")
    parser.add_argument("--only", nargs="+", choices=SECTIONS)
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--backend", choices=["auto", "cpu", "gpu", "metal"])
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--worker-args", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        result = WORKERS[args.worker](json.loads(args.worker_args))
        print(RESULT_MARK + json.dumps(result, default=float), flush=True)
        return 0
    return main(quick=args.quick, out=args.out, only=args.only, repeats=args.repeats, backend=args.backend,
                tiny=args.tiny)


if __name__ == "__main__":
    sys.exit(_cli())
