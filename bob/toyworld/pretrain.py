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
#: where configs/toyworld/prior.yaml keeps stage B's checkpoints.
CHECKPOINTS = Path("runs/toyworld/prior_checkpoints")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", default="bob/toyworld/prior", help="pipeline folder to write (the shipped one by default)")
    parser.add_argument("--skip-vae", action="store_true", help="reuse the VAE stage A wrote earlier")
    parser.add_argument("--vae-rounds", type=int, default=1, help="rounds of stage A, each continuing the last")
    parser.add_argument("--restart", action="store_true", help="start stage B over instead of continuing its last checkpoint")
    parser.add_argument("--steps", type=int, default=None, help="stage B's total steps (default: configs/toyworld/prior.yaml's)")
    args = parser.parse_args(argv)
    rounds = [f"runs/toyworld/prior_vae/round{i + 1}" for i in range(args.vae_rounds)]
    for i, folder in enumerate([] if args.skip_vae else rounds):
        if _finished(folder):
            print(f"{folder} is complete; skipping this VAE round (delete it to train it again)")
            continue
        init = [f"--model.init_args.init_from={rounds[i - 1]}"] if i else []
        cli_main(["fit", "-c", str(CONFIGS / "prior_vae.yaml"), f"--model.init_args.output_dir={folder}", *init])
    vae = rounds[-1]
    # Stage B is long: a stopped run goes on from its last checkpoint (optimizer, EMA and step
    # count included) when the same command is run again.
    last = CHECKPOINTS / "last.ckpt"
    resume = [f"--ckpt_path={last}"] if last.is_file() and not args.restart else []
    if resume:
        print(f"continuing stage B from {last} (--restart to start it over)")
    cli_main([
        "fit", "-c", str(CONFIGS / "prior.yaml"), f"--model.init_args.vae={vae}", f"--model.init_args.output_dir={args.output}",
        *resume, *([f"--trainer.max_steps={args.steps}"] if args.steps else []),
    ])


def _finished(vae_round: str) -> bool:
    """Whether a VAE round ran all its steps (its training record says so)."""
    from bob.toyworld.model_card import read_training_facts

    return bool(read_training_facts(vae_round).get("finished"))


if __name__ == "__main__":
    main()
