"""Run logs: W&B that never crashes a run for want of an API key, and no notices that say nothing."""

from __future__ import annotations

import logging
import os
import secrets
import string
import warnings
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


def new_run_id() -> str:
    """Eight lowercase letters and digits, the form of W&B's own run ids."""
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


class WandbLogger(LightningWandbLogger):
    """Lightning's `WandbLogger`, switched to offline mode with a one-line notice when no key is set.

    Every run gets its own folder ``<save_dir>/<project>/<run id>``: `ModelCheckpoint` puts
    ``checkpoints/`` there, bob writes the run's ``config.yaml`` and manifest there, and W&B
    its own files (``wandb/``). The run id is chosen when the logger is made (``id`` or
    ``version`` resumes a run, as does ``WANDB_RUN_ID``), so the folder is known before W&B
    starts. Runs logged offline can be uploaded later with ``wandb sync <run folder>/wandb/offline-run-*``.
    All arguments are those of `lightning.pytorch.loggers.WandbLogger`.
    """

    def __init__(self, *args: Any, offline: bool = False, **kwargs: Any):
        mode_offline = os.environ.get("WANDB_MODE", "").lower() in ("offline", "dryrun", "disabled")
        if not offline and not mode_offline and not wandb_key_configured():
            rank_zero_info("W&B: no API key configured (WANDB_API_KEY or `wandb login`); logging offline.")
            offline = True
        super().__init__(*args, offline=offline, **kwargs)
        if self._id is None:
            self._id = self._wandb_init["id"] = os.environ.get("WANDB_RUN_ID") or new_run_id()
        self._wandb_init["dir"] = str(Path(self._save_dir or ".") / str(self._project) / self._id)
        # Lightning passes anonymous=None to wandb.init even when it is not asked for, and wandb
        # warns that the (deprecated) setting has no effect; an unset value passes nothing.
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)

    @property
    def experiment(self) -> Any:
        # W&B looks for the git repository from the run folder when it starts, and warns
        # "git root ... does not exist" (recording no commit) if the folder is not there yet.
        if self._experiment is None:
            Path(self._wandb_init["dir"]).mkdir(parents=True, exist_ok=True)
        return super().experiment


#: Lightning's two advertisements (litlogger, litmodels), printed by every fit; both begin so.
LIGHTNING_TIP = "💡 Tip: For seamless cloud"


class _DropLightningTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(LIGHTNING_TIP)


def silence_empty_notices() -> None:
    """Hide the start-up notices that carry nothing for a bob user, each matched by its own text.

    Lightning's cloud "Tip" banners, and the FutureWarning torch raises when Lightning's own
    ``_pytree`` helper builds a ``LeafSpec`` (nothing a user can change). Every other message of
    those loggers and modules still shows.
    """
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(existing, _DropLightningTips) for existing in logger.filters):
        logger.addFilter(_DropLightningTips())
    warnings.filterwarnings(
        "ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning,
        module=r"lightning\.pytorch\.utilities\._pytree",
    )
