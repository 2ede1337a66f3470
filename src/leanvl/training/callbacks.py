"""Lightning callbacks of the recipes: export the trained weights as a leanvl checkpoint folder.

The Lightning ``.ckpt`` (optimizer, scheduler, loop state) is for resuming; what users load
(``leanvl.load``, ``leanvl eval``, ``leanvl index/search/ask/serve``) is the leanvl checkpoint
folder (``config.json`` + ``model.safetensors``), written atomically by :func:`leanvl.save_model`
every time a Lightning checkpoint is saved and when training ends.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L

from leanvl.checkpoint import save_model

__all__ = ["ExportModel"]


class ExportModel(L.Callback):
    """Write ``pl_module.model`` to ``folder`` (process 0 only).

    Args:
        folder: the leanvl checkpoint folder to (re)write.
        extra: returns the metadata stored in ``config.json``'s ``extra`` (answer vocabulary,
            task, step...), called at each export.
    """

    def __init__(self, folder: str | Path, extra: Callable[[L.Trainer], dict[str, Any]]) -> None:
        self.folder = Path(folder)
        self.extra = extra

    def _export(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            save_model(pl_module.model, self.folder, extra=self.extra(trainer))

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        """Export beside every Lightning checkpoint."""
        self._export(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        """Export the final weights."""
        self._export(trainer, pl_module)
