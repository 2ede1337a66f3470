"""leanvl: efficient video-language models (All-in-one, SViTT / SViTT-Ego, Video-Panda).

Public surface::

    import leanvl
    leanvl.list_models()                     # preset names
    model = leanvl.create_model("allinone_tiny")
    leanvl.save_model(model, "ckpt/")        # config.json + model.safetensors
    model = leanvl.load("ckpt/")
"""

from __future__ import annotations

__version__ = "0.1.0.dev0"

from leanvl.checkpoint import load, save_model
from leanvl.registry import create_model, list_models

__all__ = ["__version__", "create_model", "list_models", "load", "save_model"]
