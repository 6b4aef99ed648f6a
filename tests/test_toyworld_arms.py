"""Which toy-world arms a run has, and how each is made and reported (no stage runs here; the tiny
four-arm run is in test_toyworld_e2e.py)."""

import json
from dataclasses import asdict

import pytest

from bob.toyworld import demo, science
from bob.toyworld.pipeline import (
    ALL_ARMS,
    ARMS,
    QUALITY_KEYS,
    PipelineSettings,
    ToyWorldPipeline,
    default_jobs,
)
from bob.toyworld.report import ARM_TITLES, results_table, write_report
from tests.toyworld_fixtures import fake_science_run


class _Stop(Exception):
    """Raised by a fake stage: the test only wanted its arguments."""


def _stage_calls(pipeline: ToyWorldPipeline, monkeypatch) -> list[tuple[str, str, str, list[str]]]:
    calls = []

    def fake_run(stage, subcommand, config, overrides):
        calls.append((stage, subcommand, config, overrides))
        raise _Stop

    monkeypatch.setattr(pipeline, "_run", fake_run)
    return calls


def test_arms_default_to_the_demos_three_and_keep_the_table_order():
    assert PipelineSettings().arms == ARMS == ("real", "datadream", "bob")
    assert PipelineSettings.tiny().arms == ARMS
    assert ALL_ARMS == ("real", "datadream", "within_class", "bob")
    assert PipelineSettings(arms=("bob", "within_class", "real")).arms == ("real", "within_class", "bob")
    for arms in ((), ("real", "nope")):
        with pytest.raises(ValueError, match="subset"):
            PipelineSettings(arms=arms)


@pytest.mark.parametrize(("arms", "loras"), [
    (ARMS, ["datadream", "bob"]),
    (ALL_ARMS, ["datadream", "bob"]),
    (("real", "within_class"), ["bob"]),
    (("real",), []),
])
def test_each_lora_is_fine_tuned_once_for_the_arms_that_need_it(tmp_path, arms, loras):
    assert ToyWorldPipeline(tmp_path, PipelineSettings.tiny(arms=arms)).loras == loras


def test_within_class_generates_through_bobs_lora_and_config_with_own_class_contexts(tmp_path, monkeypatch):
    pipeline = ToyWorldPipeline(tmp_path, PipelineSettings.tiny(arms=ALL_ARMS))
    calls = _stage_calls(pipeline, monkeypatch)
    for arm in ("within_class", "bob"):
        with pytest.raises(_Stop):
            pipeline.generate(arm)
    (stage, subcommand, config, overrides), (_, _, bob_config, bob_overrides) = calls
    assert (stage, subcommand, config) == ("generate_within_class", "predict", bob_config)
    assert config == "generate.yaml"
    assert f"--model.init_args.lora={tmp_path / 'lora' / 'bob'}" in overrides
    assert f"--data.init_args.caption_bank={tmp_path / 'captions'}" in overrides
    assert f"--data.init_args.output_dir={tmp_path / 'synthetic' / 'within_class'}" in overrides
    assert overrides[-1] == "--data.init_args.strategy=within_class"
    assert not any("strategy" in o for o in bob_overrides)


@pytest.mark.parametrize(("arms", "compared"), [
    (ALL_ARMS, {"datadream": False, "within_class": True, "bob": True}),
    (("real", "within_class", "bob"), {"within_class": False, "bob": False}),
])
def test_quality_compares_every_other_set_with_datadream_when_the_run_has_it(tmp_path, monkeypatch, arms, compared):
    pipeline = ToyWorldPipeline(tmp_path, PipelineSettings.tiny(arms=arms))
    calls = _stage_calls(pipeline, monkeypatch)
    for arm in compared:
        with pytest.raises(_Stop):
            pipeline.quality(arm)
    expected = "--model.init_args.compare_with=" + json.dumps({"datadream": str(tmp_path / "synthetic" / "datadream")})
    assert {stage.removeprefix("quality_"): expected in overrides for stage, _, _, overrides in calls} == compared


def test_science_summary_covers_every_arm_of_the_runs():
    text = science.summarize({0: fake_science_run(ALL_ARMS, 0.5), 1: fake_science_run(ALL_ARMS, 0.7)}, 0.9, 0.8)
    for arm in ALL_ARMS:
        assert f"| {ARM_TITLES[arm]} | 0.600 ± 0.141 |" in text
    # Per seed, every arm's row: accuracy, then its synthetic set's measurements (the shots' for real only).
    assert "| 1 | real only | 0.700 | – | – | (shots: 0.300) | (shots: 0.100) | – |" in text
    assert f"| 1 | {ARM_TITLES['within_class']} | 0.700 | 0.500 | 10.00 | 0.300 | 0.100 | 1/4 |" in text
    assert f"| 1 | {ARM_TITLES['bob']} | 0.700 | 0.500 | 10.00 | 0.300 | 0.100 | 2/4 |" in text
    assert f"| 0 | {ARM_TITLES['datadream']} | 0.500 | 0.500 | 10.00 | 0.300 | 0.100 | – |" in text

    three = science.summarize({0: fake_science_run(ARMS, 0.5)}, 0.9, 0.8)
    assert ARM_TITLES["within_class"] not in three and f"| 0 | {ARM_TITLES['bob']} | 0.500 | 0.500 | 10.00 | 0.300 | 0.100 | 1/4 |" in three
    without = science.summarize({0: fake_science_run(("real", "bob"), 0.5)}, 0.9, 0.8)
    assert "lower FID than DataDream" not in without and f"| 0 | {ARM_TITLES['bob']} | 0.500 | 0.500 | 10.00 | 0.300 | 0.100 |" in without


def test_results_table_shows_synthetic_dependence_only_for_synthetic_arms():
    classifier = {arm: {"test/acc": 0.5} for arm in ALL_ARMS}
    dependence = {arm: {"home_rate": 0.91, "nmi": 0.5, "cramers_v": 0.5} for arm in ALL_ARMS}
    rows = results_table(classifier, dependence).splitlines()[2:]
    assert [row.split(" | ")[0].removeprefix("| ") for row in rows] == [ARM_TITLES[arm] for arm in ALL_ARMS]
    assert "0.91" not in rows[0] and all("0.91" in row for row in rows[1:])


def _pipeline_made_by(module, argv, monkeypatch, tmp_path) -> dict:
    """The arguments ``module.main(argv)`` builds its `ToyWorldPipeline` with (it is stopped there)."""
    seen = {}

    class Pipeline:
        def __init__(self, out, settings, jobs):
            seen.update(settings=settings, jobs=jobs)
            raise _Stop

    monkeypatch.setattr(module, "ToyWorldPipeline", Pipeline)
    monkeypatch.setattr(science, "ClassOracle", lambda: None)  # trains a CNN otherwise
    with pytest.raises(_Stop):
        module.main(["--out", str(tmp_path), *argv])
    return seen


@pytest.mark.parametrize(("module", "argv", "expected"), [
    (demo, [], ARMS),
    (demo, ["--tiny", "--arms", "within_class", "real"], ("real", "within_class")),
    (science, [], ALL_ARMS),
    (science, ["--arms", "real", "bob"], ("real", "bob")),
])
def test_commands_take_the_arms(monkeypatch, tmp_path, module, argv, expected):
    assert _pipeline_made_by(module, argv, monkeypatch, tmp_path)["settings"].arms == expected


@pytest.mark.parametrize("module", [demo, science])
@pytest.mark.parametrize(("argv", "expected"), [([], None), (["--jobs", "1"], 1), (["--jobs", "3"], 3)])
def test_commands_take_the_number_of_stages_side_by_side(monkeypatch, tmp_path, module, argv, expected):
    jobs = _pipeline_made_by(module, argv, monkeypatch, tmp_path)["jobs"]
    assert jobs == (default_jobs() if expected is None else expected)


def test_report_leads_with_the_comparison_table_and_the_side_by_side_grid(tmp_path):
    synthetic = ("datadream", "bob")
    measured = {"num_images": 80, "home_rate": 0.3, "nmi": 0.1, "nmi_null": 0.05, "cramers_v": 0.2,
                "cramers_v_null": 0.1, "p_value": 0.5}
    quality = {key: 1.0 for key in QUALITY_KEYS}
    summary = {
        "settings": asdict(PipelineSettings()), "prior": str(tmp_path / "prior"), "timings": {"lora_bob": 1.0},
        "classifier": {arm: {"test/acc": 0.5} for arm in ARMS}, "quality": {arm: quality for arm in synthetic},
    }
    grids = {name: tmp_path / f"grid_{name}.png" for name in ("real", *synthetic, "comparison")}
    text = write_report(tmp_path, summary, {"real": measured, **dict.fromkeys(synthetic, measured)}, grids).read_text()
    order = [text.index(marker) for marker in (
        "## Classifier", "| BOB", "(grid_comparison.png)", "## Class-background dependence",
        "## Synthetic sets against", "(grid_real.png)", "(grid_bob.png)",
    )]
    assert order == sorted(order)
    assert text.count("grid_comparison.png") == 1


@pytest.mark.parametrize(("processes", "together"), [(1, "one after another"), (2, "2 side by side")])
def test_report_gives_the_whole_run_time_beside_the_stage_times(tmp_path, processes, together):
    quality = {key: 1.0 for key in QUALITY_KEYS}
    summary = {
        "settings": asdict(PipelineSettings()), "prior": str(tmp_path / "prior"),
        "timings": {"lora_datadream": 200.0, "lora_bob": 210.0}, "wall_seconds": 222.0,
        "compute": {"stage_processes": processes},
        "classifier": {arm: {"test/acc": 0.5} for arm in ARMS}, "quality": {arm: quality for arm in ("datadream", "bob")},
    }
    text = write_report(tmp_path, summary, {}, {}).read_text()
    assert f"lora_datadream 200 s, lora_bob 210 s; all stages 3.7 min ({together})" in text
