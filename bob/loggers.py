"""W&B logging that never crashes a run for want of an API key."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger
from lightning.pytorch.utilities import rank_zero_info


def wandb_key_configured() -> bool:
    """True when W&B could authenticate: an env key, or a stored login in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


class WandbLogger(LightningWandbLogger):
    """Lightning's `WandbLogger`, switched to offline mode with a one-line notice when no key is set.

    Runs logged offline can be uploaded later with ``wandb sync <run dir>``. All arguments are
    those of `lightning.pytorch.loggers.WandbLogger`.
    """

    def __init__(self, *args: Any, offline: bool = False, **kwargs: Any):
        mode_offline = os.environ.get("WANDB_MODE", "").lower() in ("offline", "dryrun", "disabled")
        if not offline and not mode_offline and not wandb_key_configured():
            rank_zero_info("W&B: no API key configured (WANDB_API_KEY or `wandb login`); logging offline.")
            offline = True
        super().__init__(*args, offline=offline, **kwargs)
