"""Lightning plug-ins of the recipes: export the trained weights as a leanvl checkpoint folder,
and write / read the Lightning ``.ckpt`` files safely.

The Lightning ``.ckpt`` (optimizer, scheduler, loop state) is for resuming; what users load
(``leanvl.load``, ``leanvl eval``, ``leanvl index/search/ask/serve``) is the leanvl checkpoint
folder (``config.json`` + ``model.safetensors``), written atomically by :func:`leanvl.save_model`
every time a Lightning checkpoint is saved and when training ends.

:class:`SafeCheckpointIO` replaces Lightning's checkpoint I/O. Lightning 2.6 writes a ``.ckpt``
through an fsspec "transaction" whose temporary file lives in the system temp folder and is
*moved* into place at commit: when that folder is on another file system the move is a copy
into the final name, so a kill during it leaves a truncated ``last.ckpt``; nothing is fsynced.
Here the bytes go to a temporary file beside the target, are fsynced and renamed over it
(``os.replace``, atomic on POSIX), so a kill at any point leaves the previous checkpoint intact
(at worst a stray ``.<name>.*.tmp`` that no loader looks at). Reading always uses torch's
weights-only unpickler: a checkpoint that would run code when unpickled is refused with
:class:`~leanvl.convert.safe_load.UnsafeCheckpointError` and nothing in it executes.
"""

from __future__ import annotations

import os
import pickle
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from leanvl.checkpoint import save_model
from leanvl.convert.safe_load import CheckpointReadError, UnsafeCheckpointError

__all__ = ["ExportModel", "SafeCheckpointIO", "read_lightning_checkpoint"]


def read_lightning_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a Lightning ``.ckpt`` with torch's weights-only unpickler (nothing executes).

    Raises:
        UnsafeCheckpointError: the pickle references a global that is not a tensor, container
            or plain value (e.g. ``os.system``); nothing was executed.
        CheckpointReadError: missing, empty, truncated or not a checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointReadError(path, "missing file")
    if path.stat().st_size == 0:
        raise CheckpointReadError(path, "zero bytes")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's weights-only unpickler refuses the global before building anything
        text = str(exc)
        if "Weights only load failed" in text or "GLOBAL" in text:
            named = re.search(r"GLOBAL ([\w.]+)", text)
            raise UnsafeCheckpointError(
                path, named.group(1) if named else "", "load", "refused by the weights-only loader"
            ) from None
        raise CheckpointReadError(
            path, f"not a checkpoint ({text.splitlines()[0][:200]})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        reason = (str(exc).split("\n")[0] or type(exc).__name__)[:120]
        raise CheckpointReadError(path, f"truncated or not a checkpoint ({reason})") from None
    if not isinstance(state, dict) or "state_dict" not in state:
        raise CheckpointReadError(path, "not a Lightning checkpoint (no 'state_dict')")
    return state


class SafeCheckpointIO(TorchCheckpointIO):
    """Atomic ``.ckpt`` writes (temporary file beside the target, fsync, rename) and
    weights-only reads (see the module docstring)."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        """Write ``checkpoint`` to ``path`` atomically."""
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                self._write(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)

    def _write(self, checkpoint: dict[str, Any], f) -> None:
        """Serialise ``checkpoint`` into the open temporary file ``f``."""
        torch.save(checkpoint, f)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict[str, Any]:
        """Read ``path`` with the weights-only unpickler, whatever ``weights_only`` says."""
        return read_lightning_checkpoint(path, map_location=map_location or "cpu")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not possible on every platform
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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
            from leanvl.training.module import check_finite

            check_finite(pl_module.model, f"'{self.folder}' at step {trainer.global_step}")
            save_model(pl_module.model, self.folder, extra=self.extra(trainer))

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        """Export beside every Lightning checkpoint."""
        self._export(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        """Export the final weights."""
        self._export(trainer, pl_module)
