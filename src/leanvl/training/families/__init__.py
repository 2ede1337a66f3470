"""Recipes of model families other than All-in-one, plugged into the training engine.

The engine (:mod:`leanvl.training.runner`) trains All-in-one with
:class:`~leanvl.training.data.VideoTextDataModule` and :func:`~leanvl.training.tasks.build_task`.
A family whose models need other data or objectives provides a module
``leanvl.training.families.<family>`` that defines:

* ``handles(model_name: str) -> bool``: whether the preset belongs to the family;
* any of ``build_datamodule(cfg)``, ``build_model(cfg, datamodule)`` and
  ``build_task(cfg, datamodule)``; what it leaves out falls back to the engine's default.

A data module must offer what the engine uses of the default one: ``tokenizer``, ``answers``
(None when there is no answer vocabulary), ``eval_split(split) -> (datasets, EvalData)`` and the
``start_batch`` attribute (set on resume).
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["FAMILY_MODULES", "hooks_for"]

#: Modules looked up, in order; a missing module is skipped.
FAMILY_MODULES = ("svitt", "videopanda")


def hooks_for(model_name: str) -> ModuleType | None:
    """The family module that handles preset ``model_name``, or None (the All-in-one default)."""
    for family in FAMILY_MODULES:
        name = f"{__name__}.{family}"
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        if module.handles(model_name):
            return module
    return None
