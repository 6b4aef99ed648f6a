"""`python -m bob.toyworld.vae_eval VAE [VAE ...]`: how much of the few-shot classes survives each
autoencoder's round trip (the ceiling of any generator built on it)."""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bob.toyworld.demo

from bob.toyworld.oracle import ClassOracle  # noqa: E402
from bob.toyworld.round_trip import (  # noqa: E402
    load_prior_vae,
    oracle_round_trip_accuracy,
    posterior_spread,
    random_scenes,
)
from bob.toyworld.variants import FEWSHOT_VARIANTS  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("vaes", nargs="+", help="VAE folders, or toy prior pipeline folders (their vae/)")
    parser.add_argument("--per-class", type=int, default=50, help="fresh renders per few-shot class")
    parser.add_argument("--oracle-steps", type=int, default=600, help="training steps of the class oracle")
    parser.add_argument("--oracle-renders", type=int, default=150, help="oracle training renders per class")
    args = parser.parse_args(argv)
    oracle = ClassOracle(renders_per_class=args.oracle_renders, steps=args.oracle_steps)
    results = {"oracle_on_renders": oracle.render_accuracy}
    spread_scenes = random_scenes([v for v in FEWSHOT_VARIANTS for _ in range(args.per_class)], seed=99)
    for folder in args.vaes:
        vae = load_prior_vae(folder)
        accuracy = oracle_round_trip_accuracy(vae, oracle, args.per_class)
        results[folder] = {
            "oracle_after_round_trip": accuracy, "share_of_render_accuracy": accuracy / oracle.render_accuracy,
            **posterior_spread(vae, spread_scenes),
        }
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
