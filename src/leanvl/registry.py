"""Model registry: presets are plain functions, families map checkpoint folders back to classes.

A model family (``allinone``, ``svitt``, ``videopanda``) registers its ``nn.Module`` class together
with its config dataclass, so that :func:`leanvl.load` can rebuild a model from ``config.json``.
A preset (``allinone_ti``, ``allinone_tiny``...) is a function returning a model; its keyword
arguments override config fields::

    @register_model
    def allinone_tiny(**overrides) -> AllInOne:
        return AllInOne(AllInOneConfig(hidden_size=64, **overrides))
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from leanvl.config import suggest

__all__ = [
    "create_model",
    "get_family",
    "list_models",
    "model_summary",
    "register_family",
    "register_model",
]

M = TypeVar("M", bound=type)
_PRESETS: dict[str, Callable[..., nn.Module]] = {}
_FAMILIES: dict[str, tuple[type[nn.Module], type]] = {}


def register_family(name: str, config_class: type) -> Callable[[M], M]:
    """Class decorator: ``@register_family("allinone", AllInOneConfig)`` on the model class.

    The class must accept its config as the first constructor argument and keep it as
    ``self.config``.
    """

    def wrap(cls: M) -> M:
        if name in _FAMILIES and _FAMILIES[name][0] is not cls:
            raise ValueError(f"model family '{name}' is already registered")
        cls.family = name  # type: ignore[attr-defined]
        cls.config_class = config_class  # type: ignore[attr-defined]
        _FAMILIES[name] = (cls, config_class)
        return cls

    return wrap


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Function decorator registering a preset under the function's name."""
    if fn.__name__ in _PRESETS:
        raise ValueError(f"model preset '{fn.__name__}' is already registered")
    _PRESETS[fn.__name__] = fn
    return fn


def _import_models() -> None:
    # Families live in leanvl.models; importing the package registers them all.
    importlib.import_module("leanvl.models")


def list_models(pattern: str | None = None) -> list[str]:
    """Names of the registered presets, sorted; ``pattern`` keeps names containing it."""
    _import_models()
    return sorted(n for n in _PRESETS if pattern is None or pattern in n)


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build preset ``name`` with random initialisation; ``overrides`` set config fields."""
    _import_models()
    if name not in _PRESETS:
        raise KeyError(
            f"unknown model '{name}'{suggest(name, list(_PRESETS))} "
            f"(leanvl.list_models() lists them)"
        )
    return _PRESETS[name](**overrides)


def model_summary(name: str) -> str:
    """First line of the preset's docstring, for ``leanvl models``."""
    _import_models()
    doc = (_PRESETS[name].__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""


def get_family(name: str) -> tuple[type[nn.Module], type]:
    """(model class, config class) of family ``name``."""
    _import_models()
    if name not in _FAMILIES:
        raise KeyError(f"unknown model family '{name}'{suggest(name, list(_FAMILIES))}")
    return _FAMILIES[name]
