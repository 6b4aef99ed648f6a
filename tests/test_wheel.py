"""The wheel holds what the demo and the shipped configs need: installed, it runs outside the repository."""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: What `pip wheel` reads: the package (with its configs link), the configs it links to, the metadata.
SOURCES = ("bob", "configs", "pyproject.toml", "README.md", "LICENSE")


def build_wheel(tmp_path: Path) -> Path:
    """Build from a copy of the sources, so the build leaves nothing in the repository."""
    source = tmp_path / "source"
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"), str(source)],
        check=True, timeout=300,
    )
    return next((tmp_path / "dist").glob("bob-*.whl"))


def venv_with_this_environment(folder: Path) -> Path:
    """A fresh venv whose packages are its own plus (after them) this environment's, minus bob's editable hook."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=120)
    python = folder / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout.strip()
    # A plain path line: the directory's own .pth files (bob's editable finder) are not run.
    Path(purelib, "reuse_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


@pytest.mark.slow
def test_installed_wheel_runs_the_demo_and_the_documented_commands(tmp_path):
    wheel = build_wheel(tmp_path)
    python = venv_with_this_environment(tmp_path / "venv")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
        check=True, timeout=300,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "BOB_DEBUG")}
    env.update(HF_HUB_OFFLINE="1", WANDB_MODE="offline")

    def run(*command: str) -> subprocess.CompletedProcess:
        return subprocess.run(command, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600)

    located = run(str(python), "-c", "import bob; print(bob.__file__)")
    assert Path(located.stdout.strip()).is_relative_to(tmp_path / "venv"), located

    printed = run(str(tmp_path / "venv" / "bin" / "bob"), "fit", "-c", "configs/t2i.yaml", "-c", "configs/datasets/cub.yaml",
                  "--print_config")
    assert printed.returncode == 0, printed.stderr[-3000:]
    assert "class_path: bob.modules.LoRAFineTuner" in printed.stdout and "class_path: bob.data.CUB200" in printed.stdout

    demo = run(str(python), "-m", "bob.toyworld.demo", "--tiny", "--out", "demo")
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert (elsewhere / "demo" / "report.md").is_file() and (elsewhere / "demo" / "results.json").is_file()
