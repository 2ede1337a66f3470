"""leanvl checkpoint folders: ``config.json`` + ``model.safetensors``, written atomically.

A checkpoint folder is what ``leanvl convert`` writes, what training exports, and what
:func:`load` opens. Weights are safetensors only, so loading one never executes code.
Writes go to a temporary sibling folder that is renamed into place, so a process killed while
saving leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model as _load_safetensors
from safetensors.torch import save_model as _save_safetensors
from torch import nn

from leanvl.config import ConfigError, config_from_dict, config_to_dict
from leanvl.registry import get_family

__all__ = [
    "CONFIG_NAME",
    "FORMAT",
    "WEIGHTS_NAME",
    "atomic_write_text",
    "load",
    "read_config",
    "save_model",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT = "leanvl-checkpoint/1"


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_model(model: nn.Module, path: str | Path, *, extra: dict[str, Any] | None = None) -> Path:
    """Save a registered model as a leanvl checkpoint folder at ``path`` (replaced atomically).

    Args:
        model: an instance of a registered family (has ``family`` and ``config``).
        path: the folder to write.
        extra: JSON-serialisable metadata stored beside the config (e.g. answer vocabulary,
            conversion report, training provenance).
    """
    family = getattr(model, "family", None)
    if family is None or not hasattr(model, "config"):
        raise TypeError(f"{type(model).__name__} is not a registered leanvl model family")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": FORMAT,
        "family": family,
        "config": config_to_dict(model.config),
        "extra": extra or {},
    }
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        _save_safetensors(model, str(tmp / WEIGHTS_NAME))
        (tmp / CONFIG_NAME).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        old = path.with_name(f".{path.name}.old")
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def read_config(path: str | Path) -> dict[str, Any]:
    """The parsed ``config.json`` of checkpoint folder ``path``, validated."""
    file = Path(path) / CONFIG_NAME
    if not file.is_file():
        raise FileNotFoundError(f"'{path}' is not a leanvl checkpoint folder: no {CONFIG_NAME}")
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"'{file}': not valid JSON ({exc})") from exc
    for key in ("format", "family", "config"):
        if key not in meta:
            raise ConfigError(f"'{file}': missing field '{key}'")
    if meta["format"] != FORMAT:
        raise ConfigError(f"'{file}': unsupported format {meta['format']!r} (expected {FORMAT!r})")
    return meta


def _check_safetensors(weights: Path) -> None:
    """Refuse a weights file that is a pickle / torch zip (never unpickled) or not safetensors.

    A safetensors file starts with the little-endian length of its JSON header, then ``{``.
    """
    with open(weights, "rb") as f:
        head = f.read(9)
    if len(head) == 9 and head[8:9] == b"{":
        return
    if head[:2] == b"PK" or head[:1] == b"\x80":
        raise ValueError(
            f"'{weights}': refused: this is a pickle / torch.save file, not safetensors; "
            "leanvl checkpoint folders hold safetensors only and are never unpickled"
        )
    raise ValueError(f"'{weights}': not a safetensors file (truncated or another format)")


def load(
    path: str | Path,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> nn.Module:
    """Open a leanvl checkpoint folder: rebuild the model from its config and load the weights
    strictly. Returns the model in eval mode."""
    path = Path(path)
    if path.is_file():
        raise ValueError(
            f"'{path}' is a file, not a leanvl checkpoint folder; leanvl.load never unpickles "
            f"(official checkpoints: `leanvl convert allinone|svitt|videopanda` first)"
        )
    meta = read_config(path)
    model_cls, config_cls = get_family(meta["family"])
    config = config_from_dict(config_cls, meta["config"])
    model = model_cls(config)
    weights = path / WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(f"'{path}': no {WEIGHTS_NAME}")
    _check_safetensors(weights)
    try:
        missing, unexpected = _load_safetensors(model, str(weights), strict=False)
    except SafetensorError as exc:
        raise ValueError(f"'{weights}': not a valid safetensors file ({exc})") from exc
    except RuntimeError as exc:  # shape mismatches
        raise ValueError(
            f"'{weights}' does not match the {meta['family']} config in "
            f"'{path / CONFIG_NAME}': {exc}"
        ) from exc
    if missing or unexpected:
        raise ValueError(
            f"'{weights}' does not match the {meta['family']} config: "
            f"missing {sorted(missing)[:8]}, unexpected {sorted(unexpected)[:8]}"
        )
    model.checkpoint_extra = meta.get("extra", {})
    return model.to(device=device, dtype=dtype).eval()
