"""Versions of the packages that shape a stage's output, recorded in every manifest."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import bob

PACKAGES = (
    "torch", "torchvision", "lightning", "diffusers", "transformers", "peft",
    "timm", "torchmetrics", "torch-fidelity", "safetensors",
)


def package_versions() -> dict[str, str]:
    versions = {"bob": bob.__version__}
    for name in PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions
