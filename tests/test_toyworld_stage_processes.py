"""Independent stages run side by side in worker processes and give the run one process gives."""

import argparse
import hashlib
import json
from concurrent.futures import Executor, Future

import pytest
import torch
from safetensors.torch import load_file

from bob.toyworld.pipeline import PipelineSettings, ToyWorldPipeline, default_jobs, jobs_argument

ARMS = ("real", "datadream", "bob")


def _images(folder):
    images = folder / "images"
    return {str(path.relative_to(images)): hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(images.rglob("*.png"))}


@pytest.mark.slow
def test_stages_side_by_side_give_the_run_that_one_process_gives(tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # each side-by-side stage then has one thread too: the same kernels both ways
    try:
        settings = PipelineSettings.tiny(arms=ARMS)
        alone = ToyWorldPipeline(tmp_path / "alone", settings, jobs=1).run()
        side_by_side = ToyWorldPipeline(tmp_path / "side_by_side", settings, jobs=2).run()
    finally:
        torch.set_num_threads(before)

    assert alone["compute"]["stage_processes"] == 1 and side_by_side["compute"]["stage_processes"] == 2
    # Every stage ran, and each worker's stage time came back to the run's summary.
    assert set(side_by_side["timings"]) == set(alone["timings"]) >= {
        "lora_datadream", "lora_bob", "generate_datadream", "generate_bob", "classifier_real", "classifier_bob",
    }
    for lora in ("datadream", "bob"):
        weights = [load_file(tmp_path / run / "lora" / lora / "pytorch_lora_weights.safetensors") for run in ("alone", "side_by_side")]
        assert weights[0].keys() == weights[1].keys()
        assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])
    for arm in ("datadream", "bob"):
        images = [_images(tmp_path / run / "synthetic" / arm) for run in ("alone", "side_by_side")]
        assert len(images[0]) == 8 and images[0] == images[1]
    assert side_by_side["classifier"] == alone["classifier"]
    assert side_by_side["quality"] == alone["quality"]
    assert json.loads((tmp_path / "side_by_side" / "results.json").read_text())["classifier"] == alone["classifier"]


@pytest.mark.slow
def test_a_stage_that_fails_in_its_worker_fails_the_run(tmp_path):
    # A bad override of BOB's LoRA stage only: its worker exits with the CLI's error, and the
    # run stops there instead of waiting or going on to generation.
    settings = PipelineSettings.tiny(arms=ARMS, extra={"lora_bob": ["--model.init_args.unet_rank=not-a-number"]})
    pipeline = ToyWorldPipeline(tmp_path / "run", settings, jobs=2)
    with pytest.raises(SystemExit):
        pipeline.run()
    assert not (tmp_path / "run" / "synthetic").exists()


def test_jobs_are_a_whole_number_of_one_or_more():
    assert jobs_argument("2") == 2
    with pytest.raises(argparse.ArgumentTypeError, match="at least 1, got 0"):
        jobs_argument("0")
    with pytest.raises(ValueError, match="jobs must be at least 1"):
        ToyWorldPipeline("unused", PipelineSettings.tiny(), jobs=0)


def test_default_jobs_share_the_threads_torch_has():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert default_jobs() == 1  # one thread: a second process would only oversubscribe it
        torch.set_num_threads(2)
        assert default_jobs() == 2
        pipeline = ToyWorldPipeline("unused", PipelineSettings.tiny(), jobs=2)
        assert pipeline.stage_threads(pipeline.jobs) == 1 and pipeline.stage_threads(1) == 2
    finally:
        torch.set_num_threads(before)


def test_stages_run_jobs_at_a_time_and_a_last_one_alone_runs_here_on_every_thread(monkeypatch):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        pipeline = ToyWorldPipeline("unused", PipelineSettings.tiny(), jobs=2)
        here = []
        monkeypatch.setattr(pipeline, "generate", lambda name: here.append((name, torch.get_num_threads())) or f"here:{name}")

        class Workers(Executor):
            submitted = []

            def submit(self, fn, *args):
                self.submitted.append(args)  # out, settings, stage, name, threads
                future = Future()
                future.set_result((f"worker:{args[3]}", {f"generate_{args[3]}": 1.0}))
                return future

        results = pipeline._each("generate", ["datadream", "within_class", "bob"], Workers())
    finally:
        torch.set_num_threads(before)
    assert [(args[2], args[3], args[4]) for args in Workers.submitted] == [("generate", "datadream", 1), ("generate", "within_class", 1)]
    assert here == [("bob", 2)]
    assert results == {"datadream": "worker:datadream", "within_class": "worker:within_class", "bob": "here:bob"}
    assert pipeline.timings == {"generate_datadream": 1.0, "generate_within_class": 1.0}
