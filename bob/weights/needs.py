"""Which weights each of bob's classes loads, read from its arguments in a resolved config."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from bob.data.errors import BobInputError
from bob.hub import torch_hub_checkpoint
from bob.weights.weight import Weight, hub_or_local, local_file

#: What `bob.modules.diffusion.components.load_stable_diffusion` reads, no more: the
#: single-file checkpoints, ``.bin`` copies, other variants and the safety checker that the
#: repositories also hold are skipped. Parts a family lacks match nothing in its repository:
#: ``text_encoder_2`` (SD-XL, SD3), ``transformer`` and ``text_encoder_3`` (SD3's T5).
DIFFUSERS_PARTS = (
    "text_encoder/model", "text_encoder_2/model", "text_encoder_3/model", "unet/diffusion_pytorch_model",
    "transformer/diffusion_pytorch_model", "vae/diffusion_pytorch_model",
)
TOKENIZERS = ("tokenizer", "tokenizer_2", "tokenizer_3")
#: Config, tokenizer, processor and chat-template files of a transformers model, and its safetensors.
TRANSFORMERS_FILES = ("*.json", "*.txt", "*.model", "*.tiktoken", "*.jinja", "*.safetensors")
TRANSFORMERS_BIN = ("pytorch_model*.bin",)

Finder = Callable[[str, Mapping[str, Any]], list[Weight]]


def stable_diffusion_files(variant: str | None) -> tuple[str, ...]:
    """The files of a diffusers SD 1.x / 2.x, SD-XL or SD3 repository that bob loads, for weight
    ``variant``: each part's config and its safetensors, whole or in shards with their index
    (SD3.5's T5 is sharded); never another variant's copy."""
    suffix = f".{variant}" if variant else ""
    files = ["model_index.json", "scheduler/*", *(f"{name}/*" for name in TOKENIZERS)]
    for part in DIFFUSERS_PARTS:
        files += [
            f"{part.split('/')[0]}/config.json",
            f"{part}{suffix}.safetensors",
            f"{part}-[0-9]*-of-[0-9]*{suffix}.safetensors",
            f"{part}{suffix}-[0-9]*-of-[0-9]*.safetensors" if variant else f"{part}.safetensors.index.json",
            f"{part}.safetensors.index{suffix}.json",
        ]
    return tuple(dict.fromkeys(files))


def stable_diffusion(key: str, args: Mapping[str, Any]) -> list[Weight]:
    """`LoRAFineTuner` and `SyntheticImageGenerator`: the diffusers pipeline ``base_model``."""
    return [
        hub_or_local(
            f"{key}.base_model",
            args["base_model"],
            "Stable Diffusion pipeline (diffusers)",
            revision=args.get("revision"),
            allow_patterns=stable_diffusion_files(args.get("variant")),
            probe_file="model_index.json",
        )
    ]


def transformers_model(what: str, arg: str = "model") -> Finder:
    """A finder for a class loading a transformers model named by its argument ``arg``."""

    def find(key: str, args: Mapping[str, Any]) -> list[Weight]:
        patterns = TRANSFORMERS_FILES + (("*.py",) if args.get("trust_remote_code") else ())
        return [
            hub_or_local(
                f"{key}.{arg}",
                args[arg],
                what,
                revision=args.get("revision"),
                allow_patterns=patterns,
                fallback_patterns=TRANSFORMERS_BIN,
                probe_file="config.json",
            )
        ]

    return find


def vae(key: str, args: Mapping[str, Any]) -> list[Weight]:
    """`VAELatentFeatures`: a diffusers VAE, alone or in a pipeline's ``subfolder``."""
    folder = f"{args['subfolder']}/" if args.get("subfolder") else ""
    return [
        hub_or_local(
            f"{key}.model",
            args["model"],
            "VAE (diffusers)",
            allow_patterns=(f"{folder}config.json", f"{folder}diffusion_pytorch_model.safetensors"),
            fallback_patterns=(f"{folder}diffusion_pytorch_model.bin",),
            probe_file=f"{folder}config.json",
        )
    ]


def timm_weights(key: str, model_name: str) -> list[Weight]:
    """timm's pretrained weights for ``model_name``: its hub repository, or its URL when it has none."""
    import timm

    what = f"timm weights of {model_name}"
    if model_name.startswith("hf-hub:"):  # timm's own spelling of "these weights live in that repository"
        repo = model_name.removeprefix("hf-hub:")
        return [
            hub_or_local(
                key, repo, what, allow_patterns=("*.json", "*.safetensors"), probe_file="config.json"
            )
        ]
    config = timm.models.get_pretrained_cfg(model_name)
    if config is None:
        raise BobInputError(
            f"timm has no pretrained weights {model_name!r} ({key}); list the tags with "
            f"`python -c \"import timm; print(timm.list_pretrained('{model_name.split('.')[0]}.*'))\"`"
        )
    if config.hf_hub_id:
        repo, _, revision = config.hf_hub_id.partition("@")
        return [
            hub_or_local(
                key,
                repo,
                what,
                revision=revision or None,
                allow_patterns=("config.json", "model.safetensors"),
                fallback_patterns=("pytorch_model.bin",),
                probe_file="model.safetensors",
            )
        ]
    if config.url:
        return [Weight((key,), "url", config.url, what, destination=str(torch_hub_checkpoint(config.url)))]
    return [Weight((key,), "local", model_name, what, note="timm names no download for these weights")]


def timm_backbone(key: str, args: Mapping[str, Any]) -> list[Weight]:
    """`TimmBackbone`: timm's pretrained weights unless ``pretrained`` is off or a file is given."""
    if not args.get("pretrained"):
        return []
    overlay = (args.get("model_kwargs") or {}).get("pretrained_cfg_overlay") or {}
    if overlay.get("file"):
        return [
            local_file(
                f"{key}.model_kwargs.pretrained_cfg_overlay.file", overlay["file"], "timm weights file"
            )
        ]
    return timm_weights(f"{key}.model_name", args["model_name"])


def timm_features(key: str, args: Mapping[str, Any]) -> list[Weight]:
    """`TimmFeatures`: timm's pretrained weights unless ``weights_file`` is given."""
    if args.get("weights_file"):
        return [local_file(f"{key}.weights_file", args["weights_file"], "timm weights file")]
    return timm_weights(f"{key}.model_name", args["model_name"])


def inception(key: str, args: Mapping[str, Any]) -> list[Weight]:
    """`InceptionFeatures`: torch-fidelity's file behind a URL unless ``weights_path`` is given."""
    from bob.metrics.extractors import INCEPTION_URL

    what = "FID Inception-v3 (torch-fidelity, not on the hub)"
    if args.get("weights_path"):
        return [local_file(f"{key}.weights_path", args["weights_path"], what)]
    return [
        Weight(
            (f"{key}.weights_path",),
            "url",
            INCEPTION_URL,
            what,
            destination=str(torch_hub_checkpoint(INCEPTION_URL)),
        )
    ]


def finders() -> list[tuple[type, Finder]]:
    """(class, finder) for every bob class that loads weights; subclasses are matched too."""
    from bob.metrics.extractors import (
        CLIPImageFeatures,
        DINOv2Features,
        InceptionFeatures,
        TimmFeatures,
        VAELatentFeatures,
    )
    from bob.modules import Captioner, CLIPBackbone, LoRAFineTuner, SyntheticImageGenerator, TimmBackbone

    return [
        (LoRAFineTuner, stable_diffusion),
        (SyntheticImageGenerator, stable_diffusion),
        (Captioner, transformers_model("captioning VLM (transformers)")),
        (CLIPBackbone, transformers_model("CLIP (transformers)")),
        (CLIPImageFeatures, transformers_model("CLIP image tower (transformers)")),
        (DINOv2Features, transformers_model("DINOv2 (transformers)")),
        (VAELatentFeatures, vae),
        (TimmBackbone, timm_backbone),
        (TimmFeatures, timm_features),
        (InceptionFeatures, inception),
    ]


def class_nodes(node: Any, key: str = "") -> Iterator[tuple[str, type, dict[str, Any]]]:
    """(key of the init args, class, init args with the class's defaults filled in) of every
    ``class_path`` in ``node``; keys are spelled as on the command line (``model.init_args``)."""
    if isinstance(node, list):
        for index, item in enumerate(node):
            yield from class_nodes(item, f"{key}[{index}]")
        return
    if not isinstance(node, Mapping):
        return
    if isinstance(node.get("class_path"), str):
        cls = import_class(node["class_path"])
        init_args = dict(node.get("init_args") or {})
        if cls is not None:
            yield f"{key}.init_args", cls, {**defaults(cls), **init_args}
        yield from class_nodes(init_args, f"{key}.init_args")
        return
    for name, value in node.items():
        yield from class_nodes(value, f"{key}.{name}" if key else str(name))


def import_class(class_path: str) -> type | None:
    """The class a resolved ``class_path`` names, or None when it is not an importable class."""
    module, _, name = class_path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None  # bob's weight loaders all import; anything else is none of them
    return found if inspect.isclass(found) else None


def defaults(cls: type) -> dict[str, Any]:
    """``cls.__init__``'s default arguments, for keys a config leaves out."""
    parameters = inspect.signature(cls.__init__).parameters.values()
    return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}


def weights_in_config(config: Mapping[str, Any]) -> list[Weight]:
    """Every weight the classes of a resolved run config load, each once, in config order."""
    table = finders()
    found: dict[tuple[str, str, str | None], Weight] = {}
    for key, cls, args in class_nodes(config):
        for base, find in table:
            if issubclass(cls, base):
                for weight in find(key, args):
                    known = found.get(weight.identity())
                    found[weight.identity()] = known.merged(weight) if known else weight
    return list(found.values())


def weights_for_run(args: list[str]) -> list[Weight]:
    """The weights of the run ``python main.py <args>`` (``fit -c configs/t2i.yaml -c configs/datasets/aircraft.yaml``)."""
    from bob.weights.run_config import resolve_run_config

    _, config = resolve_run_config(args)
    return weights_in_config(config)
