"""`python -m bob.toyworld.pretrain`: both fits that make the shipped toy prior, in order."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

# Threads that spin while waiting steal the other thread's core on a busy machine (a VAE step
# measured 7x slower); libgomp reads this when torch loads, so it is set before the import.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from bob.cli import main as cli_main  # noqa: E402

CONFIGS = Path("configs/toyworld")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", default="bob/toyworld/prior", help="pipeline folder to write (the shipped one by default)")
    parser.add_argument("--skip-vae", action="store_true", help="reuse the VAE stage A wrote earlier")
    parser.add_argument("--vae-rounds", type=int, default=2, help="rounds of stage A, each continuing the last")
    args = parser.parse_args(argv)
    rounds = [f"runs/toyworld/prior_vae/round{i + 1}" for i in range(args.vae_rounds)]
    for i, folder in enumerate([] if args.skip_vae else rounds):
        init = [f"--model.init_args.init_from={rounds[i - 1]}"] if i else []
        cli_main(["fit", "-c", str(CONFIGS / "prior_vae.yaml"), f"--model.init_args.output_dir={folder}", *init])
    vae = rounds[-1]
    cli_main([
        "fit", "-c", str(CONFIGS / "prior.yaml"), f"--model.init_args.vae={vae}", f"--model.init_args.output_dir={args.output}",
    ])


if __name__ == "__main__":
    main()
