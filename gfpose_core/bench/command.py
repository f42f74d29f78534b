"""The `gfpose bench` command: its options and the entry point. Light on purpose: the command line builds this
parser on every start, so the benchmark's sections load only when the command runs."""
from __future__ import annotations

from pathlib import Path

from gfpose_core.bench.sections import SECTIONS

EXTRA = "bench"      # pyproject's optional dependencies for the benchmark and its plots


def _check_extra():
    missing = []
    for module in ("matplotlib", "httpx"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise SystemExit(f"gfpose bench needs {', '.join(missing)}: pip install 'gfpose-core[{EXTRA}]'")


def add_parser(subparsers):
    p = subparsers.add_parser("bench", help="benchmark the engine against baselines on held-out data",
                              description="Writes DIR/report.md (tables, plots, pass/fail targets) and "
                                          "DIR/results.json.")
    p.add_argument("--out", default="bench_out", help="report folder (default: bench_out)")
    p.add_argument("--quick", action="store_true", help="a smaller run (under 3 minutes on a 2-core CPU)")
    p.add_argument("--weights", default=None, help="folder with model.safetensors + config.json "
                                                   "(default: the shipped weights)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                   help="run only these sections (default: all)")
    p.add_argument("--merge-into", default=None, metavar="DIR",
                   help="also put the sections run into the report in DIR (its results.json), keeping its other "
                        "sections, and render DIR/report.md again")
    p.set_defaults(func=run)
    return p


def run(args):
    _check_extra()
    from gfpose_core.bench.common import Sizes
    from gfpose_core.bench.run import run_bench
    from gfpose_core.data import DATA_DIR
    from gfpose_core.engine import Engine
    if not DATA_DIR.is_dir():
        raise FileNotFoundError(f"benchmark data folder {DATA_DIR} not found")
    engine = Engine.load(args.weights, device=args.device)
    sizes = Sizes.quick() if args.quick else Sizes()
    results = run_bench(engine, args.out, sizes, weights=args.weights, sections=args.sections)
    if args.merge_into:
        from gfpose_core.bench.run import merge_into
        merge_into(args.merge_into, results, args.sections)
        print(f"merged {', '.join(args.sections)} into {Path(args.merge_into) / 'results.json'}")
    t = results["targets"]
    passed = sum(1 for v in t.values() if v["pass"])
    failed = sum(1 for v in t.values() if v["pass"] is False)
    print(f"bench ({sizes.name}) done in {results['meta']['elapsed_s']:.0f} s: targets {passed} passed, {failed} "
          f"failed; engine loses {len(results['comparisons']['losses'])} of "
          f"{results['comparisons']['total']} comparisons; report in {Path(args.out) / 'report.md'}")
    return results
