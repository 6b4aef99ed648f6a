"""The paper's classifier experiments as composed configs: stage, dataset, backbone and arm instantiate together."""

from pathlib import Path

import pytest
import torch

from bob.cli import main
from bob.data import CUB200, FGVCAircraft, OxfordPets, StanfordCars
from bob.datamodules.real_synthetic import paper_train_transform
from bob.modules.classifier import CLIPBackbone, TimmBackbone
from tests.fake_data import (
    make_cub200,
    make_diffii_folder,
    make_fgvc_aircraft,
    make_flowers102,
    make_oxford_pets,
    make_stanford_cars,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
FAKES = {
    "aircraft": make_fgvc_aircraft,
    "cub": make_cub200,
    "cars": make_stanford_cars,
    "pets": make_oxford_pets,
    "cub_lt": make_cub200,
    "flowers_lt": make_flowers102,
}
BACKBONES = {"clip": CLIPBackbone, "resnet50": TimmBackbone, "mae": TimmBackbone}
ARMS = {"real": None, "datadream": "datadream_", "bob": "bob_"}

# Each dataset's headline config; on Aircraft every backbone x arm; long-tail and 10-shot variants.
EXPERIMENTS = (
    [(dataset, None, None, None) for dataset in FAKES]
    + [("aircraft", backbone, arm, None) for backbone in BACKBONES for arm in ARMS]
    + [("cub_lt", "clip", "real", None), ("flowers_lt", "mae", "datadream", None)]
    + [("cars", "resnet50", "datadream", 10), ("pets", "mae", "bob", 10)]
)


READERS = {"aircraft": FGVCAircraft, "cub": CUB200, "cars": StanfordCars, "pets": OxfordPets}


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """Fake official layouts, and Diff-II split folders (5 and 10 shots) for the few-shot datasets."""
    base = tmp_path_factory.mktemp("datasets")
    made = {}
    for name, writer in FAKES.items():
        folder = name.removesuffix("_lt")
        made[name] = made.get(folder) or writer(base / folder)
    for name, reader_class in READERS.items():
        reader = reader_class(str(made[name]))
        for shots in (5, 10):
            make_diffii_folder(reader, base / "diff-ii" / name, shots)
        made[f"{name}-diffii"] = base / "diff-ii" / name
    return made


def instantiate(dataset: str, roots, tmp_path, *extra: str):
    paths = [f"--data.init_args.dataset.init_args.root={roots[dataset]}", f"--trainer.logger.init_args.save_dir={tmp_path}"]
    if dataset in READERS:
        paths.append(f"--data.init_args.split_source={roots[f'{dataset}-diffii']}")
    paths.append(f"--data.init_args.split_file={tmp_path}/split.json")
    return main(
        ["-c", str(CONFIGS / "classifier.yaml"), "-c", str(CONFIGS / "datasets" / f"{dataset}.yaml"), *extra, *paths],
        run=False,
    )


@pytest.mark.parametrize(("dataset", "backbone", "arm", "shots"), EXPERIMENTS)
def test_experiment_config_instantiates(dataset, backbone, arm, shots, roots, tmp_path):
    extra = []
    if backbone:
        extra += ["-c", str(CONFIGS / "classifier" / "backbones" / f"{backbone}.yaml")]
    if arm:
        extra += ["-c", str(CONFIGS / "classifier" / "arms" / f"{arm}.yaml")]
    if shots:
        extra += [f"--data.init_args.shots={shots}"]
    cli = instantiate(dataset, roots, tmp_path, *extra)
    model, data = cli.model, cli.datamodule
    assert model.num_classes == data.num_classes == len(model.class_names)
    if backbone:
        assert type(model.backbone) is BACKBONES[backbone]
    if backbone == "mae":
        assert model.backbone.layer_decay == 0.75 and model.backbone.model_name == "vit_base_patch16_224.mae"
    if backbone == "resnet50":
        assert model.backbone.model_name == "resnet50.tv2_in1k" and model.backbone.lora_targets == ["qkv"]
    if arm == "real":
        assert data.synthetic_folder is None
    else:
        prefix = ARMS[arm or "bob"]
        sampling = f"{'lt100' if dataset.endswith('_lt') else f'{shots or 5}shot'}-diffii"
        assert data.synthetic_folder.name == f"{prefix}{sampling}_seed0"
    assert data.shots == (None if dataset.endswith("_lt") else shots or 5)
    # Long-tail real images count as often as the release repeats them; few-shot ones 100 // shots.
    assert data.real_repeats == {"cub_lt": 6, "flowers_lt": 5}.get(dataset, 100 // (shots or 5))


def test_headline_config_is_the_papers_recipe(roots, tmp_path):
    cli = instantiate("aircraft", roots, tmp_path)
    model, data = cli.model, cli.datamodule
    backbone = model.backbone
    assert isinstance(backbone, CLIPBackbone) and backbone.model_name == "openai/clip-vit-base-patch16"
    assert (backbone.finetune, backbone.lora_rank, backbone.lora_alpha, backbone.lora_dropout) == ("lora", 16, 32, 0.1)
    assert backbone.lora_targets == ["q_proj", "v_proj"]
    assert model.real_weight == 0.8 and model.mixer.prob == 0.2 and model.warmup_epochs == 3 and model.min_lr == 1e-8
    assert cli.trainer.max_epochs == 100 and data.batch_size == 64 and data.shots == 5
    assert cli.trainer.checkpoint_callback.monitor == "val/acc" and cli.trainer.checkpoint_callback.mode == "max"
    # The paper's augmentation is the data module's default, written once.
    assert repr(data.train_transform) == repr(paper_train_transform(224))
    image = torch.randint(0, 256, (3, 300, 280), dtype=torch.uint8)
    assert data.train_transform(image).shape == (3, 224, 224)
