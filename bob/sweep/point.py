"""One grid point: run the CLI, then record the best validation score (``python -m bob.sweep.point``)."""

from __future__ import annotations

import sys

from bob.atomic import atomic_write_json
from bob.cli import main
from bob.console import input_errors_as_one_line


def run_point(result_file: str, args: list[str]) -> None:
    """Run ``fit`` with ``args`` and write the best monitored score to ``result_file`` (global rank 0)."""
    cli = main(args)
    trainer = cli.trainer
    if not trainer.is_global_zero:
        return
    checkpoint = trainer.checkpoint_callback
    score = getattr(checkpoint, "best_model_score", None)
    atomic_write_json(
        result_file,
        {
            "score": None if score is None else float(score),
            "monitor": getattr(checkpoint, "monitor", None),
            "best_model_path": getattr(checkpoint, "best_model_path", None),
            "epochs": trainer.current_epoch,
            "args": args,
        },
    )


if __name__ == "__main__":
    # Under DDP, Lightning starts the other ranks by re-running this same command line.
    with input_errors_as_one_line():
        run_point(sys.argv[1], sys.argv[2:])
