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
CHECKPOINTS = "runs/toyworld/prior_checkpoints"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", default="bob/toyworld/prior", help="pipeline folder to write (the shipped one by default)")
    parser.add_argument("--skip-vae", action="store_true", help="reuse the VAE stage A wrote earlier")
    parser.add_argument("--vae-rounds", type=int, default=1, help="rounds of stage A, each continuing the last")
    parser.add_argument("--restart", action="store_true", help="start stage B over instead of continuing its last checkpoint")
    parser.add_argument("--steps", type=int, default=None, help="stage B's total steps (default: configs/toyworld/prior.yaml's)")
    parser.add_argument(
        "--accelerator", default="cpu", help="Lightning accelerator of both stages (cpu, gpu, auto); the recipe is the same"
    )
    parser.add_argument(
        "--max-minutes", type=float, default=None,
        help="stop stage B after this many minutes of training and export what it has (run again to go on)",
    )
    parser.add_argument(
        "--checkpoints", default=CHECKPOINTS,
        help="stage B's checkpoint folder, continued from when it has a last.ckpt (another one for a run with other settings)",
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="OVERRIDE", dest="overrides",
        help="a LightningCLI override of stage B, e.g. --set=--model.init_args.train_text_encoder=false (repeatable)",
    )
    args = parser.parse_args(argv)
    if args.max_minutes is not None and args.max_minutes <= 0:
        parser.error(f"--max-minutes must be positive, got {args.max_minutes}")
    device = [f"--trainer.accelerator={args.accelerator}"] if args.accelerator != "cpu" else []
    time_limit = [f"--trainer.max_time={lightning_duration(args.max_minutes)}"] if args.max_minutes else []
    rounds = [f"runs/toyworld/prior_vae/round{i + 1}" for i in range(args.vae_rounds)]
    for i, folder in enumerate([] if args.skip_vae else rounds):
        if _finished(folder):
            print(f"{folder} is complete; skipping this VAE round (delete it to train it again)")
            continue
        init = [f"--model.init_args.init_from={rounds[i - 1]}"] if i else []
        cli_main(["fit", "-c", str(CONFIGS / "prior_vae.yaml"), f"--model.init_args.output_dir={folder}", *init, *device])
    vae = rounds[-1]
    if args.skip_vae and not (Path(vae) / "config.json").is_file() and not any("init_args.vae=" in o for o in args.overrides):
        parser.error(
            f"--skip-vae: {vae} holds no VAE; train it (leave out --skip-vae), or give stage B another one, "
            "e.g. the shipped prior's: --set=--model.init_args.vae=bob/toyworld/prior/vae"
        )
    # Stage B is long: a stopped run goes on from its last checkpoint (optimizer, EMA and step
    # count included) when the same command is run again.
    last = Path(args.checkpoints) / "last.ckpt"
    resume = [f"--ckpt_path={last}"] if last.is_file() and not args.restart else []
    if resume:
        print(f"continuing stage B from {last} (--restart to start it over)")
    # The checkpoint callback is the config's last callback, which a list-item override reaches.
    checkpoints = [] if args.checkpoints == CHECKPOINTS else [f"--trainer.callbacks.init_args.dirpath={args.checkpoints}"]
    cli_main([
        "fit", "-c", str(CONFIGS / "prior.yaml"), f"--model.init_args.vae={vae}", f"--model.init_args.output_dir={args.output}",
        *checkpoints, *args.overrides, *resume, *([f"--trainer.max_steps={args.steps}"] if args.steps else []), *device, *time_limit,
    ])


def lightning_duration(minutes: float) -> str:
    """``minutes`` as the DD:HH:MM:SS string of Lightning's ``Trainer(max_time=...)``."""
    seconds = round(minutes * 60)
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    return f"{days:02d}:{hours:02d}:{seconds // 60:02d}:{seconds % 60:02d}"


def _finished(vae_round: str) -> bool:
    """Whether a VAE round ran all its steps (its training record says so)."""
    from bob.toyworld.model_card import read_training_facts

    return bool(read_training_facts(vae_round).get("finished"))


if __name__ == "__main__":
    main()
