"""`python -m bob.sweep --grid GRID --out DIR -- <fit arguments>`: run a grid, then (optionally) the final run."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys

from bob.console import input_errors_as_one_line
from bob.sweep.grid import load_grid
from bob.sweep.runner import Sweep


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(
        prog="python -m bob.sweep",
        description="Run a hyper-parameter grid over `python main.py fit` (a short run per point), "
        "tabulate the best validation scores, and run the best point for the full schedule.",
        epilog="example: python -m bob.sweep --grid configs/classifier/grids/clip.yaml "
        "--out runs/sweeps/aircraft-clip-bob --launch-final -- -c configs/classifier.yaml -c configs/datasets/aircraft.yaml",
    )
    parser.add_argument("--grid", required=True, help="YAML file: CLI option -> list of values")
    parser.add_argument("--out", required=True, help="folder for point results, results.tsv, final_command.txt")
    parser.add_argument("--sweep-epochs", type=int, default=10, help="epochs per grid point (default 10)")
    parser.add_argument("--final-epochs", type=int, default=100, help="epochs of the final run (default 100)")
    parser.add_argument("--mode", choices=["max", "min"], default="max", help="better monitored score (default max)")
    parser.add_argument("--launch-final", action="store_true", help="run the best point for --final-epochs")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    options, fit_args = parser.parse_args(argv[:split]), argv[split + 1 :]
    if not fit_args:
        parser.error("give the shared fit arguments after `--`, e.g. -- -c configs/classifier.yaml -c configs/datasets/aircraft.yaml")
    return options, fit_args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    options, fit_args = parse(sys.argv[1:] if argv is None else argv)
    sweep = Sweep(fit_args, load_grid(options.grid), options.out, options.sweep_epochs, options.final_epochs, options.mode)
    if options.dry_run:
        for index in range(len(sweep.points)):
            print(shlex.join(sweep.point_command(index)))
        return 0
    results = sweep.run()
    print((sweep.out_dir / "results.tsv").read_text(encoding="utf-8"), end="")
    best = sweep.best(results)
    if best is None:
        print("no grid point produced a score; see the logs above", file=sys.stderr)
        return 1
    print(f"best: {best.label} ({best.score:.4f}); final run: {sweep.out_dir / 'final_command.txt'}")
    return sweep.launch_final(best) if options.launch_final else 0


if __name__ == "__main__":
    with input_errors_as_one_line():
        sys.exit(main())
