"""The hyper-parameter grid runner: expansion, per-point runs, results table, resume, final command."""

import json
import subprocess

import pytest

from bob.data.errors import BobInputError
from bob.sweep import Sweep, expand_grid, load_grid, point_overrides
from bob.sweep import runner as runner_module
from bob.sweep.__main__ import main as sweep_main
from bob.sweep.point import run_point
from tests.classifier_fixtures import timm_backbone, write_classifier_config

FAST = ["--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1", "--data.init_args.real_repeats=1"]


def test_grid_file_expands_in_file_order(tmp_path):
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text("model.init_args.optimizer.init_args.lr: [1.0e-4, 1.0e-5]\n--model.init_args.real_weight: [0.5, 0.8, 1]\n")
    grid = load_grid(grid_file)
    points = expand_grid(grid)
    assert len(points) == 6
    assert points[0] == {"model.init_args.optimizer.init_args.lr": 1e-4, "model.init_args.real_weight": 0.5}
    assert points[-1] == {"model.init_args.optimizer.init_args.lr": 1e-5, "model.init_args.real_weight": 1}
    assert point_overrides(points[1]) == ["--model.init_args.optimizer.init_args.lr=0.0001", "--model.init_args.real_weight=0.8"]
    grid_file.write_text("model.init_args.real_weight: 0.5\n")
    with pytest.raises(BobInputError, match="non-empty list"):
        load_grid(grid_file)


def test_shipped_grids_are_the_papers():
    assert len(expand_grid(load_grid("configs/classifier/grids/clip.yaml"))) == 16
    assert len(expand_grid(load_grid("configs/classifier/grids/resnet50.yaml"))) == 18
    assert len(expand_grid(load_grid("configs/classifier/grids/mae.yaml"))) == 8


def in_process(calls):
    """Stands in for subprocess.run: runs `python -m bob.sweep.point RESULT ARGS...` in this process."""

    def run(command, env=None):
        calls.append(command)
        assert command[1:3] == ["-m", "bob.sweep.point"] and env["WANDB_RUN_GROUP"]
        run_point(command[3], command[4:])
        return subprocess.CompletedProcess(command, 0)

    return run


def test_sweep_runs_every_point_tabulates_and_resumes(tmp_path, monkeypatch):
    config = write_classifier_config(tmp_path, timm_backbone())
    grid = {"model.init_args.real_weight": [0.5, 1.0], "model.init_args.mix_prob": [0.0]}
    sweep = Sweep(["-c", str(config), *FAST], grid, tmp_path / "sweep", sweep_epochs=1, final_epochs=7)
    calls = []
    monkeypatch.setattr(runner_module.subprocess, "run", in_process(calls))
    results = sweep.run()
    assert len(calls) == 2 and all("--model.init_args.test_after_fit=false" in c for c in calls)
    assert all(r.status == "done" and 0 <= r.score <= 1 for r in results)
    table = (tmp_path / "sweep" / "results.tsv").read_text().splitlines()
    assert table[0].split("\t") == ["point", "score", "status", "model.init_args.real_weight", "model.init_args.mix_prob"]
    assert len(table) == 3
    best = sweep.best(results)
    final = (tmp_path / "sweep" / "final_command.txt").read_text()
    assert f"--model.init_args.real_weight={best.point['model.init_args.real_weight']}" in final
    assert "--trainer.max_epochs=7" in final and " fit -c " in final
    saved = json.loads((sweep.point_dir(0) / "result.json").read_text())
    assert saved["monitor"] == "val/acc" and saved["score"] == results[0].score
    # The sweep never looks at the test set.
    logs = sorted((tmp_path / "run").rglob("metrics.csv"))
    assert len(logs) == 2
    assert all("val/acc" in log.read_text() and "test/acc" not in log.read_text() for log in logs)

    calls.clear()
    assert [r.score for r in sweep.run()] == [r.score for r in results]
    assert calls == []  # both points were already done


def test_failed_point_is_reported_and_the_others_still_count(tmp_path, monkeypatch):
    sweep = Sweep(["-c", "unused.yaml"], {"model.init_args.real_weight": [0.5, 0.8]}, tmp_path / "sweep")

    def fake_run(command, env=None):
        if "--model.init_args.real_weight=0.5" in command:
            return subprocess.CompletedProcess(command, 3)
        result = command[3]
        (tmp_path / "sweep" / "points" / "001").mkdir(parents=True, exist_ok=True)
        with open(result, "w") as file:
            json.dump({"score": 0.25, "monitor": "val/acc", "args": command[4:]}, file)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(runner_module.subprocess, "run", fake_run)
    results = sweep.run()
    assert [r.status for r in results] == ["failed (exit 3)", "done"]
    assert sweep.best(results).point == {"model.init_args.real_weight": 0.8}


def test_dry_run_prints_one_command_per_point(tmp_path, capsys):
    grid = tmp_path / "grid.yaml"
    grid.write_text("model.init_args.real_weight: [0.5, 0.8]\n")
    assert sweep_main(["--grid", str(grid), "--out", str(tmp_path / "s"), "--dry-run", "--", "-c", "configs/classifier.yaml", "-c", "configs/datasets/aircraft.yaml"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all("-m bob.sweep.point" in line and "--trainer.max_epochs=10" in line for line in lines)


@pytest.mark.slow
def test_a_point_runs_as_its_own_process(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    config = write_classifier_config(tmp_path, timm_backbone())
    sweep = Sweep(["-c", str(config), *FAST], {"model.init_args.real_weight": [0.8]}, tmp_path / "sweep", sweep_epochs=1)
    [result] = sweep.run()
    assert result.status == "done" and 0 <= result.score <= 1
