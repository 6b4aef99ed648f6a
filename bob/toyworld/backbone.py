"""`python -m bob.toyworld.backbone`: the classifier backbone pretrained on the broad world, shipped as timm weights."""

from __future__ import annotations

import argparse
import os
import random
import shutil
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bob.toyworld.demo

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from bob.atomic import atomic_write, atomic_write_json, atomic_write_text  # noqa: E402
from bob.cli import main as cli_main  # noqa: E402
from bob.toyworld.contexts import BACKGROUNDS, POSES  # noqa: E402
from bob.toyworld.render import Scene, render  # noqa: E402
from bob.toyworld.variants import broad_variants  # noqa: E402

WEIGHTS_FILE = "model.safetensors"
_NET_PREFIX = "backbone.net."


def write_broad_dataset(root: str | Path, per_class: int = 24, test_per_class: int = 2, seed: int = 2) -> Path:
    """The broad world's variants as classes (`ClassFolders` layout), contexts uniform.

    A folder rendered earlier is reused when it holds this world's variants (its ``done`` marker
    lists them); one rendered from another version of the world is rendered again.
    """
    root = Path(root)
    names = [v.name for v in broad_variants()]
    marker = root / "done"
    if marker.is_file():
        if marker.read_text(encoding="utf-8").split() == names:
            return root
        print(f"{root} holds another version of the broad world; rendering it again")
        shutil.rmtree(root)
    rng = random.Random(f"broad-backbone|{seed}")
    jobs = [
        (split, variant, i)
        for variant in broad_variants()
        for split, count in (("train", per_class), ("test", test_per_class))
        for i in range(count)
    ]
    for split, variant, i in tqdm(jobs, desc="rendering broad-world classes", unit="img"):
        scene = Scene(variant, rng.randrange(len(BACKGROUNDS)), rng.randrange(len(POSES)), rng.randrange(2**31))
        atomic_write(root / split / variant.name / f"{i:03d}.png", lambda tmp, s=scene: render(s).save(tmp, format="PNG"))
    atomic_write_text(marker, "\n".join(names) + "\n")
    return root


def export_backbone(checkpoint: str | Path, folder: str | Path, facts: dict) -> Path:
    """The timm network's weights from a `Classifier` checkpoint, without its head, plus a card."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    weights = {k[len(_NET_PREFIX):]: v.contiguous() for k, v in state.items() if k.startswith(_NET_PREFIX)}
    weights = {k: v for k, v in weights.items() if not k.startswith("fc.")}
    folder = Path(folder)
    atomic_write(folder / WEIGHTS_FILE, lambda tmp: save_file(weights, str(tmp)))
    atomic_write_json(folder / "training.json", facts)
    atomic_write_text(folder / "README.md", f"""# bob toy-world classifier backbone

timm `test_resnet` ({sum(v.numel() for v in weights.values()) / 1e6:.2f} M parameters, no head) trained
from scratch to tell apart the {facts['num_classes']} broad-world variants ({facts['per_class']} renders
each, backgrounds and poses uniform; the 16 few-shot classes are not among them) with bob's own
`Classifier` (`configs/toyworld/backbone.yaml`). Best validation accuracy {facts['best_val_acc']:.3f},
{facts['epochs']} epochs, {facts['wall_time_minutes']} min wall time. Load it with
`TimmBackbone(model_name="test_resnet", pretrained=True,
model_kwargs={{"pretrained_cfg_overlay": {{"file": "<this folder>/{WEIGHTS_FILE}"}}}})`.

Reproduce: `python -m bob.toyworld.backbone`
""")
    return folder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="runs/toyworld/backbone_data")
    parser.add_argument("--output", default="bob/toyworld/backbone")
    parser.add_argument("--config", default="configs/toyworld/backbone.yaml")
    args = parser.parse_args(argv)
    root = write_broad_dataset(args.data)
    started = time.monotonic()
    cli = cli_main(["fit", "-c", args.config, f"--data.init_args.dataset.init_args.root={root}",
                    f"--data.init_args.split_file={Path(root) / 'split.json'}"])
    checkpoint = cli.trainer.checkpoint_callback
    facts = {
        "num_classes": len(broad_variants()),
        "per_class": 24,
        "epochs": cli.trainer.current_epoch,
        "best_val_acc": float(checkpoint.best_model_score),
        "wall_time_minutes": round((time.monotonic() - started) / 60, 1),
        "torch_threads": torch.get_num_threads(),
    }
    export_backbone(checkpoint.best_model_path, args.output, facts)
    print(f"backbone written to {args.output} (best val acc {facts['best_val_acc']:.3f})")


if __name__ == "__main__":
    main()
