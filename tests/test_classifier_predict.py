"""Classification as a product: a checkpoint that rebuilds its classifier alone, and predictions on new images."""

import csv
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import bob
from bob.cli import main
from bob.data.errors import BobInputError
from bob.data.image_list import list_images
from bob.modules import Backbone, Classifier, CLIPBackbone, TimmBackbone
from bob.modules.class_specs import build_from_spec
from tests.classifier_fixtures import CLASSES, timm_backbone, write_classifier_config
from tests.fake_data import make_class_folders

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A classifier fitted on the fake 3-class world; its best checkpoint."""
    root = tmp_path_factory.mktemp("trained")
    config = write_classifier_config(root, timm_backbone(), model_args={"test_after_fit": False})
    cli = main(["fit", "-c", str(config), "--trainer.max_epochs=1"])
    return Path(cli.trainer.checkpoint_callback.best_model_path)


@pytest.fixture(scope="module")
def new_images(tmp_path_factory):
    """Images the classifier never saw, of another size than it was trained on, in nested folders."""
    root = make_class_folders(tmp_path_factory.mktemp("new"), ["x", "y"], train_per_class=2, test_per_class=1, size=48)
    return root


def test_checkpoint_holds_everything_to_rebuild_the_classifier(trained):
    checkpoint = torch.load(trained, map_location="cpu", weights_only=True)  # plain data only
    hparams = checkpoint["hyper_parameters"]
    assert hparams["class_names"] == CLASSES and hparams["descriptor"] == "aircraft" and hparams["image_size"] == 32
    assert hparams["backbone"]["class_path"].endswith("TimmBackbone")
    assert hparams["backbone"]["init_args"]["model_name"] == "test_resnet"
    assert hparams["optimizer"]["init_args"]["lr"] == 1e-3
    assert checkpoint["preprocessing"]["mean"] and checkpoint["preprocessing"]["center_crop"] == 32
    yaml.safe_dump({k: v for k, v in hparams.items()})  # YAML-able as it is

    model = Classifier.load_from_checkpoint(trained)
    assert model.class_names == CLASSES and model.backbone.built
    state = checkpoint["state_dict"]
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key])


def test_python_made_classifier_keeps_specs_not_objects():
    model = Classifier(TimmBackbone("test_resnet", pretrained=False), num_classes=3, optimizer=torch.optim.SGD)
    assert model.hparams.backbone == {"class_path": "bob.modules.classifier.timm_backbone.TimmBackbone",
                                      "init_args": {**model.hparams.backbone["init_args"], "model_name": "test_resnet"}}
    assert model.hparams.optimizer == {"class_path": "torch.optim.sgd.SGD", "init_args": {}}
    rebuilt = Classifier(**{k: v for k, v in model.hparams.items()})
    assert rebuilt.backbone.init_arguments() == model.backbone.init_arguments()
    assert rebuilt.optimizer_factory.func is torch.optim.SGD


@pytest.mark.parametrize("backbone", [
    TimmBackbone("test_vit", pretrained=False, finetune="lora", layer_decay=0.75, model_kwargs={"drop_path_rate": 0.1}),
    CLIPBackbone("some/clip", prompt="a photo of a {class_name}", finetune="linear", lora_targets=("q_proj",)),
])
def test_every_backbone_argument_is_in_its_spec(backbone):
    spec = backbone.spec()
    assert set(spec["init_args"]) == set(inspect.signature(type(backbone).__init__).parameters) - {"self"}
    rebuilt = build_from_spec(spec, Backbone, "test")
    assert type(rebuilt) is type(backbone) and rebuilt.spec() == spec
    assert yaml.safe_load(yaml.safe_dump(spec)) == spec


def test_python_api_classifies_a_folder_from_the_checkpoint_alone(trained, new_images):
    rows = bob.classify(trained, new_images, top_k=2)
    assert [row["image"] for row in rows] == [str(p) for p in list_images(new_images)]
    for row in rows:
        assert [p["class_name"] for p in row["predictions"]] == [CLASSES[p["label"]] for p in row["predictions"]]
        probabilities = [p["probability"] for p in row["predictions"]]
        assert len(probabilities) == 2 and probabilities == sorted(probabilities, reverse=True)
    # The same numbers as the trained module on the same preprocessing.
    model = Classifier.load_from_checkpoint(trained).eval()
    from bob.data.images import load_rgb
    from bob.datamodules.real_images import TO_UINT8

    first = list_images(new_images)[0]
    with torch.no_grad():
        probabilities = model(model.preprocess([TO_UINT8(load_rgb(first))])).softmax(-1)[0]
    assert rows[0]["predictions"][0]["probability"] == pytest.approx(float(probabilities.max()), abs=1e-6)


def predict_args(checkpoint: Path, images: Path, save_dir: Path, *extra: str) -> list[str]:
    return [
        "predict", "-c", str(REPO / "configs" / "predict.yaml"), f"--ckpt_path={checkpoint}",
        "--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false",
        f"--trainer.logger.init_args.save_dir={save_dir}",
        f"--data.init_args.images={images}", "--data.init_args.num_workers=0", "--data.init_args.batch_size=2", *extra,
    ]


def test_predict_command_writes_top_k_with_class_names(trained, new_images, tmp_path):
    cli = main(predict_args(trained, new_images, tmp_path / "runs"))
    run = Path(cli.trainer.logger.log_dir)
    with open(run / "predictions.csv", newline="") as file:
        table = list(csv.DictReader(file))
    assert [row["image"] for row in table] == [str(p) for p in list_images(new_images)]
    assert list(table[0]) == ["image", "class_1", "probability_1", "class_2", "probability_2", "class_3", "probability_3"]
    assert (run / "config.yaml").is_file() and not list(run.glob(".*parts"))
    expected = bob.classify(trained, new_images, top_k=3)
    assert [row["class_1"] for row in table] == [row["predictions"][0]["class_name"] for row in expected]
    assert all(row["class_1"] in CLASSES for row in table)

    # A list file, JSON lines, the top class only.
    listed = tmp_path / "images.txt"
    listed.write_text("\n".join(str(p) for p in list_images(new_images)[:2]))
    output = tmp_path / "top1.jsonl"
    writer = {"class_path": "PredictionWriter", "init_args": {"output": str(output), "top_k": 1}}
    main(predict_args(trained, listed, tmp_path / "runs", f"--trainer.callbacks={json.dumps([writer])}"))
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert [line["image"] for line in lines] == [str(p) for p in list_images(new_images)[:2]]
    assert all(len(line["predictions"]) == 1 for line in lines)


def test_predict_needs_only_the_checkpoint_and_the_images(trained, new_images, tmp_path):
    cli = main([
        "predict", f"--ckpt_path={trained}", "--trainer.accelerator=cpu", "--trainer.logger=false",
        f"--trainer.default_root_dir={tmp_path}", "--data=ImagePredictDataModule",
        f"--data.init_args.images={new_images}", "--data.init_args.num_workers=0",
    ])
    assert type(cli.model) is Classifier  # taken from the checkpoint
    with open(tmp_path / "predictions.csv", newline="") as file:  # the writer the CLI adds
        assert len(list(csv.DictReader(file))) == len(list_images(new_images))


def test_predict_on_two_ddp_processes_keeps_input_order(trained, new_images, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(
        [sys.executable, "main.py", *predict_args(trained, new_images, tmp_path / "runs", "--trainer.devices=2",
                                                  "--trainer.strategy=ddp", "--data.init_args.batch_size=1")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    with open(next((tmp_path / "runs").rglob("predictions.csv")), newline="") as file:
        table = list(csv.DictReader(file))
    expected = bob.classify(trained, new_images, top_k=3)
    assert [row["image"] for row in table] == [row["image"] for row in expected]  # 6 images over 2 ranks, in input order
    assert [row["class_1"] for row in table] == [row["predictions"][0]["class_name"] for row in expected]


def test_image_lists_resolve_and_fail_clearly(tmp_path, new_images):
    images = list_images(new_images)
    listed = new_images / "list.txt"
    listed.write_text("\n".join(["# comment", "", *(str(p.relative_to(new_images)) for p in images[:2])]))
    assert list_images(listed) == [new_images / p.relative_to(new_images) for p in images[:2]]
    assert list_images(images[0]) == [images[0]]
    with pytest.raises(BobInputError, match="does not exist"):
        list_images(tmp_path / "nowhere")
    with pytest.raises(BobInputError, match="no image files"):
        list_images(tmp_path)
    listed.write_text("missing.png\n")
    with pytest.raises(BobInputError, match="do not exist"):
        list_images(listed)
