"""The shipped fine-tuning configs carry the paper's recipe and write where generation reads."""

import inspect
from pathlib import Path

import pytest
import yaml

from bob.modules import LoRAFineTuner

REPO = Path(__file__).resolve().parents[1]
DATASETS = ["aircraft", "cub", "cars", "pets", "flowers"]
ARMS = {  # file suffix -> (prompt mode, base model, epochs, adapter name, generation config)
    "": ("context", "stabilityai/stable-diffusion-2-1-base", 400, "bob", "generate.yaml"),
    "_datadream": ("class", "stabilityai/stable-diffusion-2-1-base", 200, "datadream", "generate_datadream.yaml"),
    "_sd15": ("context", "stable-diffusion-v1-5/stable-diffusion-v1-5", 400, "bob-sd15", None),
    "_datadream_sd15": ("class", "stable-diffusion-v1-5/stable-diffusion-v1-5", 200, "datadream-sd15", None),
}
PAPER_RECIPE = {
    "unet_rank": 16, "unet_alpha": 16, "train_text_encoder": True, "text_encoder_rank": 16, "text_encoder_alpha": 16,
    "lora_init": "gaussian", "learning_rate": 1e-4, "weight_decay": 1e-2, "eps": 1e-8, "warmup_steps": 100,
    "lr_schedule": "cosine", "max_grad_norm": 1.0, "effective_batch_size": 80,
    "unet_targets": ["to_q", "to_k", "to_v", "to_out.0", "add_k_proj", "add_v_proj"],
    "text_encoder_targets": ["q_proj", "k_proj", "v_proj", "out_proj"],
}


def callback(config: dict, name: str) -> dict:
    return next(c["init_args"] for c in config["trainer"]["callbacks"] if c["class_path"].endswith(name))


@pytest.mark.parametrize("suffix", list(ARMS), ids=lambda s: s or "_bob")
@pytest.mark.parametrize("dataset", DATASETS)
def test_t2i_config_holds_the_paper_recipe(dataset, suffix):
    mode, base_model, epochs, adapter, generate = ARMS[suffix]
    config = yaml.safe_load((REPO / "configs" / dataset / f"t2i{suffix}.yaml").read_text())
    model = config["model"]["init_args"]
    assert config["model"]["class_path"] == "LoRAFineTuner"
    assert model["prompt_mode"] == mode and model["base_model"] == base_model
    assert {k: model[k] for k in PAPER_RECIPE} == PAPER_RECIPE
    assert list(model["betas"]) == [0.9, 0.999]
    assert config["trainer"]["max_epochs"] == epochs and config["trainer"]["precision"] == "bf16-mixed"
    data = config["data"]["init_args"]
    assert data["image_size"] == 512 and data["batch_size"] == 8
    steps = [t["class_path"].rsplit(".", 1)[-1] for t in data["train_transform"]["init_args"]["transforms"]]
    assert steps == ["Resize", "RandomCrop"]  # resize then random crop, no flip
    assert (data["caption_bank"] is not None) == (mode == "context")
    dirpath = callback(config, "LoRAExport")["dirpath"]
    assert dirpath == f"runs/{{dataset}}/lora/{adapter}_{{sampling}}_seed{{seed}}"
    if generate is not None:  # the generation stage reads the adapter this stage writes
        generation = yaml.safe_load((REPO / "configs" / dataset / generate).read_text())
        assert generation["model"]["init_args"]["lora"] == dirpath
        assert generation["model"]["init_args"]["base_model"] == base_model


def test_module_defaults_are_the_paper_recipe():
    defaults = {k: p.default for k, p in inspect.signature(LoRAFineTuner.__init__).parameters.items() if k != "self"}
    assert {k: defaults[k] for k in PAPER_RECIPE} == PAPER_RECIPE
    assert defaults["base_model"] == "stabilityai/stable-diffusion-2-1-base" and defaults["prompt_mode"] == "context"
