"""`python -m bob.toyworld.science`: the arms (all four by default) over several seeds, mean ± std, into one summary.

Each finished seed leaves ``<out>/seed<N>/science.json``; a later run with the same settings
reuses it instead of running that seed again, so a stopped run goes on where it stopped, and seeds
run by separate processes (``--seeds 0 1 2`` beside ``--seeds 3 4``, same ``--out``) are
summarized together by a last ``--seeds 0 1 2 3 4``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from dataclasses import asdict
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bob.toyworld.demo
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from bob.atomic import atomic_write_json, atomic_write_text  # noqa: E402
from bob.data.fingerprints import folder_sha256  # noqa: E402
from bob.toyworld.demo import measure_and_report  # noqa: E402
from bob.toyworld.oracle import ClassOracle  # noqa: E402
from bob.toyworld.pipeline import (  # noqa: E402
    ALL_ARMS,
    PipelineSettings,
    ToyWorldPipeline,
    default_jobs,
    default_prior,
    jobs_argument,
    synthetic_arms,
)
from bob.toyworld.report import ARM_TITLES, markdown_table, synthetic_records  # noqa: E402
from bob.toyworld.round_trip import load_prior_vae, oracle_round_trip_accuracy  # noqa: E402

_DEPENDENCE_KEYS = ("home_rate", "nmi", "cramers_v")
#: what a finished seed leaves in its folder: the pipeline's summary with the measurements on it.
SEED_RECORD = "science.json"


def _mean_std(values: list[float | None], digits: int = 3) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {spread:.{digits}f}"


def class_fidelity(pipeline: ToyWorldPipeline, oracle: ClassOracle, class_names: list[str]) -> dict[str, float]:
    """Share of each synthetic set's images that the class oracle reads as their intended class."""
    fidelity = {}
    for arm in pipeline.synthetic_arms:
        records = synthetic_records(pipeline.out / "synthetic" / arm, class_names)
        images = []
        for record in records:
            with Image.open(record.path) as image:
                images.append(image.convert("RGB"))
        fidelity[arm] = float(np.mean(oracle.predict(images) == np.array([r.label for r in records])))
    return fidelity


def summarize(runs: dict[int, dict[str, Any]], oracle_accuracy: float, ceiling: float) -> str:
    """Markdown: per arm of the runs, test accuracy mean ± std over seeds, and the dependence of its training set."""
    seeds = sorted(runs)
    arms = list(runs[seeds[0]]["classifier"])
    lines = [
        f"Seeds {', '.join(map(str, seeds))}; mean ± sample std over seeds.",
        "",
        "| arm | test acc | test mean per-class acc | class fidelity of its synthetic set | per-class FID, mean | home-background rate | NMI | Cramér's V |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for arm in arms:
        acc = [runs[s]["classifier"][arm]["test/acc"] for s in seeds]
        per_class = [runs[s]["classifier"][arm]["test/acc_per_class"] for s in seeds]
        dependence = [
            _mean_std([runs[s]["dependence"][arm][k] for s in seeds]) if arm != "real" else "–"
            for k in _DEPENDENCE_KEYS
        ]
        fidelity = _mean_std([runs[s]["class_fidelity"][arm] for s in seeds]) if arm != "real" else "–"
        fid = _mean_std([runs[s]["quality"][arm]["fid_mean"] for s in seeds], digits=2) if arm != "real" else "–"
        lines.append(
            f"| {ARM_TITLES[arm]} | {_mean_std(acc)} | {_mean_std(per_class)} | {fidelity} | {fid} | " + " | ".join(dependence) + " |"
        )
    real = [runs[s]["dependence"]["real"]["home_rate"] for s in seeds]
    lines += ["", f"Real training shots: home-background rate {_mean_std(real)} (the bias knob)."]
    lines += [
        f"Class fidelity: share of synthetic images a CNN trained on plentiful renders (accuracy "
        f"{oracle_accuracy:.3f} on fresh renders, {ceiling:.3f} on renders after a round trip through the "
        "prior's VAE, the most a generator on this prior can reach) reads as their intended class."
    ]
    # The quality stage compares every other synthetic set with DataDream's when the run has one.
    compared = [arm for arm in synthetic_arms(arms) if arm != "datadream"] if "datadream" in arms else []
    header = ["seed", "arm", "test acc", "class fidelity", "per-class FID, mean", "home-background rate", "NMI"]
    if compared:
        header.append("classes with lower FID than DataDream")
    rows = []
    for s in seeds:
        run = runs[s]
        for arm in arms:
            synthetic = arm != "real"
            # For real only, the dependence columns show the real shots' own (the bias knob).
            dependence = run["dependence"][arm if synthetic else "real"]
            cells = [
                str(s), ARM_TITLES[arm], f"{run['classifier'][arm]['test/acc']:.3f}",
                f"{run['class_fidelity'][arm]:.3f}" if synthetic else "–",
                f"{run['quality'][arm]['fid_mean']:.2f}" if synthetic else "–",
                f"{dependence['home_rate']:.3f}" if synthetic else f"(shots: {dependence['home_rate']:.3f})",
                f"{dependence['nmi']:.3f}" if synthetic else f"(shots: {dependence['nmi']:.3f})",
            ]
            if compared:
                cells.append(run["quality"][arm]["fid_lower_than_datadream"] if arm in compared else "–")
            rows.append(cells)
    lines += ["", "Per seed:", "", markdown_table(header, rows)]
    return "\n".join(lines)


def finished_seed(record_file: Path, settings: PipelineSettings, prior_sha256: str) -> dict[str, Any] | None:
    """The record of a seed an earlier run finished with these ``settings`` on this prior, or None
    if there is none.

    Raises:
        ValueError: the record was made with other settings or another prior; reusing it would
            mix two recipes in one summary, and running the seed again would overwrite it.
    """
    if not record_file.exists():
        return None
    record = json.loads(record_file.read_text(encoding="utf-8"))
    if record.get("prior_sha256") != prior_sha256:
        raise ValueError(
            f"{record_file} was made with another prior than {record.get('prior')} holds now; pass --rerun to "
            "run that seed again, or another --out"
        )
    wanted = json.loads(json.dumps(asdict(settings)))  # tuples as JSON gives them back
    if record["settings"] != wanted:
        there = record["settings"]
        differ = sorted(k for k in wanted.keys() | there.keys() if there.get(k) != wanted.get(k))
        changes = ", ".join(f"{k}: {there.get(k)!r} there, {wanted.get(k)!r} now" for k in differ)
        raise ValueError(
            f"{record_file} was made with other settings ({changes}); pass --rerun to run that seed again, "
            "or another --out"
        )
    return record


def class_names_of(pipeline: ToyWorldPipeline) -> list[str]:
    return json.loads((pipeline.data_root / "manifest.json").read_text(encoding="utf-8"))["class_names"]


def main(argv: list[str] | None = None) -> dict[int, dict[str, Any]]:
    defaults = PipelineSettings()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="runs/science")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="one pipeline run per seed (default: five)")
    parser.add_argument("--bias", type=float, default=defaults.bias)
    parser.add_argument("--images-per-class", type=int, default=defaults.images_per_class)
    parser.add_argument("--lora-steps", type=int, default=defaults.lora_steps)
    parser.add_argument("--classifier-epochs", type=int, default=defaults.classifier_epochs)
    parser.add_argument("--prior", default=None)
    parser.add_argument("--arms", nargs="+", choices=ALL_ARMS, default=list(ALL_ARMS))
    parser.add_argument("--rerun", action="store_true", help="run every seed again, even one an earlier run finished")
    parser.add_argument(
        "--jobs", type=jobs_argument, default=default_jobs(),
        help="independent stages of a seed run side by side, sharing the torch threads (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    runs: dict[int, dict[str, Any]] = {}
    settings = {
        seed: PipelineSettings(
            seed=seed, bias=args.bias, images_per_class=args.images_per_class, lora_steps=args.lora_steps,
            classifier_epochs=args.classifier_epochs, arms=tuple(args.arms), prior=args.prior,
        )
        for seed in args.seeds
    }
    prior_sha256 = folder_sha256(args.prior or default_prior())  # the default prior is retrained in place
    # Every seed's earlier record is checked before any seed runs: a mismatch fails in seconds.
    finished = {} if args.rerun else {
        seed: record for seed in args.seeds
        if (record := finished_seed(out / f"seed{seed}" / SEED_RECORD, settings[seed], prior_sha256)) is not None
    }
    oracle = ClassOracle()
    for seed in args.seeds:
        if seed in finished:
            print(f"seed {seed}: reusing the run in {out / f'seed{seed}'} (--rerun runs it again)")
            runs[seed] = finished[seed]
        else:
            pipeline = ToyWorldPipeline(out / f"seed{seed}", settings[seed], jobs=args.jobs)
            summary = pipeline.run()
            runs[seed] = {**summary, "dependence": measure_and_report(pipeline, summary)}
            runs[seed]["class_fidelity"] = class_fidelity(pipeline, oracle, class_names_of(pipeline))
            runs[seed]["prior_sha256"] = prior_sha256
            atomic_write_json(pipeline.out / SEED_RECORD, runs[seed])
        atomic_write_json(out / "runs.json", runs)
    prior = runs[args.seeds[0]]["prior"]
    text = summarize(runs, oracle.render_accuracy, oracle_round_trip_accuracy(load_prior_vae(prior), oracle))
    atomic_write_text(out / "summary.md", f"# BOB on the toy world, {len(runs)} seed{'' if len(runs) == 1 else 's'}\n\n{text}\n")
    print("\n" + text)
    return runs


if __name__ == "__main__":
    main()
