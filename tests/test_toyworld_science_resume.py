"""`bob.toyworld.science` reuses the seeds an earlier run finished, and only those made alike."""

import json
from dataclasses import asdict, replace

import pytest

from bob.data.fingerprints import folder_sha256
from bob.toyworld import science
from bob.toyworld.pipeline import ALL_ARMS, PipelineSettings
from tests.toyworld_fixtures import fake_science_run


def _prior(tmp_path, weights: bytes = b"weights"):
    folder = tmp_path / "prior"
    (folder / "unet").mkdir(parents=True, exist_ok=True)
    (folder / "unet" / "model.safetensors").write_bytes(weights)
    (folder / "model_index.json").write_text("{}")
    return folder


def _settings(seed: int, prior) -> PipelineSettings:
    # What `science.main` builds from its defaults and --prior.
    return PipelineSettings(seed=seed, arms=ALL_ARMS, prior=str(prior))


def _write_record(out, seed: int, settings: PipelineSettings, prior_sha256: str, acc: float) -> None:
    folder = out / f"seed{seed}"
    folder.mkdir(parents=True)
    record = {**fake_science_run(ALL_ARMS, acc), "settings": asdict(settings), "prior": str(settings.prior),
              "prior_sha256": prior_sha256}
    (folder / science.SEED_RECORD).write_text(json.dumps(record))


def test_folder_sha256_follows_content_not_timestamps(tmp_path):
    prior = _prior(tmp_path)
    before = folder_sha256(prior)
    (prior / "model_index.json").touch()
    assert folder_sha256(prior) == before
    _prior(tmp_path, b"other weights")
    assert folder_sha256(prior) != before


def test_a_finished_seed_is_reused_only_with_its_settings_and_prior(tmp_path):
    prior = _prior(tmp_path)
    digest = folder_sha256(prior)
    record_file = tmp_path / "out" / "seed0" / science.SEED_RECORD
    assert science.finished_seed(record_file, _settings(0, prior), digest) is None

    _write_record(tmp_path / "out", 0, _settings(0, prior), digest, 0.4)
    assert science.finished_seed(record_file, _settings(0, prior), digest)["classifier"]["bob"]["test/acc"] == 0.4
    with pytest.raises(ValueError, match=r"seed0/science.json.*lora_steps: 300 there, 1000 now.*--rerun"):
        science.finished_seed(record_file, replace(_settings(0, prior), lora_steps=1000), digest)
    with pytest.raises(ValueError, match=r"seed0/science.json.*another prior"):
        science.finished_seed(record_file, _settings(0, prior), "0" * 64)


class _Oracle:
    render_accuracy = 0.99


def _run_main(monkeypatch, tmp_path, prior, argv):
    built = []

    class Pipeline:
        def __init__(self, out, settings, jobs):
            built.append(settings.seed)
            raise RuntimeError("a finished seed must not run again")

    monkeypatch.setattr(science, "ToyWorldPipeline", Pipeline)
    monkeypatch.setattr(science, "ClassOracle", _Oracle)
    monkeypatch.setattr(science, "load_prior_vae", lambda folder: None)
    monkeypatch.setattr(science, "oracle_round_trip_accuracy", lambda vae, oracle: 0.9)
    out = tmp_path / "out"
    return built, lambda: science.main(["--out", str(out), "--prior", str(prior), *argv])


def test_seeds_run_apart_are_summarized_together(monkeypatch, tmp_path):
    prior = _prior(tmp_path)
    digest = folder_sha256(prior)
    for seed, acc in ((0, 0.5), (1, 0.7)):  # as two processes with --seeds 0 and --seeds 1 leave them
        _write_record(tmp_path / "out", seed, _settings(seed, prior), digest, acc)
    built, main = _run_main(monkeypatch, tmp_path, prior, ["--seeds", "0", "1"])

    runs = main()
    assert built == [] and sorted(runs) == [0, 1]
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "# BOB on the toy world, 2 seeds" in summary and "| BOB (context LoRA + marginal contexts) | 0.600 ± 0.141 |" in summary
    assert sorted(json.loads((tmp_path / "out" / "runs.json").read_text())) == ["0", "1"]


def test_rerun_and_unfinished_seeds_run_and_a_mismatch_stops_before_any_seed(monkeypatch, tmp_path):
    prior = _prior(tmp_path)
    digest = folder_sha256(prior)
    _write_record(tmp_path / "out", 0, _settings(0, prior), digest, 0.5)

    built, main = _run_main(monkeypatch, tmp_path, prior, ["--seeds", "0", "1"])
    with pytest.raises(RuntimeError, match="must not run again"):
        main()
    assert built == [1]  # seed 0 was reused, seed 1 had no record

    built, main = _run_main(monkeypatch, tmp_path, prior, ["--seeds", "0", "--rerun"])
    with pytest.raises(RuntimeError, match="must not run again"):
        main()
    assert built == [0]

    built, main = _run_main(monkeypatch, tmp_path, prior, ["--seeds", "1", "0", "--lora-steps", "1000"])
    with pytest.raises(ValueError, match="lora_steps"):
        main()
    assert built == []  # seed 1 has no record, but seed 0's mismatch is found first


def test_default_is_five_seeds_and_the_summary_counts_them(monkeypatch, tmp_path):
    prior = _prior(tmp_path)
    digest = folder_sha256(prior)
    for seed in range(5):
        _write_record(tmp_path / "out", seed, _settings(seed, prior), digest, 0.5)
    summary = tmp_path / "out" / "summary.md"

    built, main = _run_main(monkeypatch, tmp_path, prior, [])
    assert sorted(main()) == [0, 1, 2, 3, 4] and built == []
    assert summary.read_text().startswith("# BOB on the toy world, 5 seeds\n")
    built, main = _run_main(monkeypatch, tmp_path, prior, ["--seeds", "3"])
    main()
    assert summary.read_text().startswith("# BOB on the toy world, 1 seed\n")
