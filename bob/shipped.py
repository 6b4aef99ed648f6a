"""Files that ship inside the package: the stage configs and the toy world's prior and backbone."""

from __future__ import annotations

from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent
#: Documented config paths start so (``-c configs/t2i.yaml``); they name files under `configs_dir`.
CONFIGS_PREFIX = "configs"
_CONFIG_OPTIONS = ("-c", "--config")


def configs_dir() -> Path:
    """The shipped configs: ``bob/configs`` in an installed package, a link to ``configs/`` in the repository."""
    return PACKAGE_ROOT / CONFIGS_PREFIX


def shipped_config(path: str) -> str:
    """``path`` as given when it exists; else, for ``configs/...``, the shipped copy of that file.

    So ``-c configs/t2i.yaml`` works from the repository root (the folder itself) and anywhere
    else once bob is installed (the copy inside the package).
    """
    candidate = Path(path)
    if candidate.exists() or candidate.is_absolute() or candidate.parts[:1] != (CONFIGS_PREFIX,):
        return path
    shipped = configs_dir().joinpath(*candidate.parts[1:])
    return str(shipped) if shipped.is_file() else path


def with_shipped_configs(args: list[str]) -> list[str]:
    """Command-line ``args`` with each ``-c``/``--config`` file resolved by `shipped_config`."""
    resolved: list[str] = []
    takes_path = False
    for arg in args:
        if takes_path:
            resolved.append(shipped_config(arg))
        elif arg.startswith("--config="):
            resolved.append("--config=" + shipped_config(arg.removeprefix("--config=")))
        else:
            resolved.append(arg)
        takes_path = not takes_path and arg in _CONFIG_OPTIONS
    return resolved
