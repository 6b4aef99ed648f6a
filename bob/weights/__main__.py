"""``python -m bob.weights [--list | --dry-run] <subcommand> -c <config> ... [--key=value ...]``.

Takes exactly the arguments of ``python main.py`` and fetches the weights that run loads into
the Hugging Face cache (and the torch hub cache for the FID Inception file), so that the run
itself can go offline (``HF_HUB_OFFLINE=1``) on a machine without internet. Run it once per
run whose weights you need; what is already cached is not downloaded again.

    --list     print each weight with the config key that names it, whether it is cached and
               an `hf download` command for it; no network
    --dry-run  ask the hub what would be downloaded and how big it is; downloads nothing
"""

from __future__ import annotations

import sys

import torch
from huggingface_hub import constants

from bob.console import debug_enabled, error_message
from bob.data.errors import BobInputError
from bob.weights.fetching import fetch, refuse_withdrawn
from bob.weights.needs import weights_for_run
from bob.weights.weight import Weight

OWN_OPTIONS = ("--list", "--dry-run")


def describe(weight: Weight) -> str:
    """Lines of ``--list`` for one weight."""
    state = f"WITHDRAWN, use {weight.mirror}" if weight.mirror else weight.cache_state()
    head = f"[{weight.kind}, {state}] {weight.name}  ({weight.what})"
    if weight.kind == "local":
        head = f"[local] {weight.name}  ({weight.what}): {weight.note}, nothing to fetch"
    lines = [head, f"    from {', '.join(weight.keys)}"]
    if weight.revision:
        lines.append(f"    revision {weight.revision}")
    if weight.allow_patterns:
        lines.append(f"    files: {' '.join(weight.allow_patterns)}")
    if weight.kind == "url":
        lines.append(f"    not a hub repository: saved as {weight.destination}")
    if weight.command():
        lines.append(f"    by hand: {weight.command()}")
    return "\n".join("  " + line for line in lines)


def caches() -> str:
    return f"caches: Hugging Face {constants.HF_HUB_CACHE}, torch hub {torch.hub.get_dir()}/checkpoints"


def run(run_args: list[str], list_only: bool, dry_run: bool) -> None:
    weights = weights_for_run(run_args)
    print(f"`python main.py {' '.join(run_args)}` loads {len(weights)} weight(s):")
    if list_only:
        print("\n".join(describe(weight) for weight in weights))
        print(caches())
        refuse_withdrawn(weights)
        return
    refuse_withdrawn(weights)  # before any download
    for weight in weights:
        print(f"  {fetch(weight, dry_run=dry_run)}", flush=True)
    if not dry_run:
        print(
            f"done; {caches()}. Copy or share them with the offline machine and set HF_HUB_OFFLINE=1 there."
        )


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (0 done, 1 a weight cannot be fetched)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.replace("``", "`"))
        return 0
    run_args = [arg for arg in argv if arg not in OWN_OPTIONS]
    try:
        run(run_args, list_only="--list" in argv, dry_run="--dry-run" in argv)
    except BobInputError as error:
        if debug_enabled():
            raise
        print(f"bob.weights: error: {error_message(error)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
