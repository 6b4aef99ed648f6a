"""The effective values a command line resolves to: what `--print_config` prints, flattened."""

from __future__ import annotations

import contextlib
import io
from typing import Any

import yaml

from bob.cli import main


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings become dotted keys; lists and scalars are leaves."""
    if isinstance(value, dict) and value:
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


def effective_config(args: list[str]) -> dict[str, Any]:
    """Resolve ``args`` (subcommand, ``-c`` files, overrides) exactly as ``python main.py`` does."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        main([*args, "--print_config"])
    return flatten(yaml.safe_load(out.getvalue()))
