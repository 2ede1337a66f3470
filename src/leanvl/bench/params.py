"""Parameter counts of a model, in total and by component (from module names).

A component is a set of top-level submodules (``vision``, ``text``, ``stab`` ...); families group
them for readability (see :mod:`leanvl.bench.workloads`). Shared (tied) parameters are counted
once, in the first component that owns them, so the components always sum to the total.
Counting works on the ``meta`` device, so full-size presets cost no memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

__all__ = ["ParamCount", "count_parameters", "top_level_component"]


@dataclass
class ParamCount:
    """Parameters of a model.

    Attributes:
        total: unique parameters.
        by_component: unique parameters per component, in module order; sums to ``total``.
        trainable: unique parameters with ``requires_grad``.
    """

    total: int
    by_component: dict[str, int] = field(default_factory=dict)
    trainable: int = 0


def top_level_component(name: str) -> str:
    """Default grouping: the first segment of a parameter's qualified name."""
    return name.split(".", 1)[0]


def count_parameters(
    model: nn.Module, component_of: Callable[[str], str] = top_level_component
) -> ParamCount:
    """Count ``model``'s parameters, grouped by ``component_of(qualified parameter name)``.

    Args:
        model: any module (parameters may live on ``meta``).
        component_of: maps a name such as ``"vision.blocks.0.fc1.weight"`` to a component.
    """
    seen: set[int] = set()
    by_component: dict[str, int] = {}
    total = trainable = 0
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in seen:
            continue
        seen.add(id(param))
        n = param.numel()
        component = component_of(name)
        by_component[component] = by_component.get(component, 0) + n
        total += n
        trainable += n if param.requires_grad else 0
    return ParamCount(total, by_component, trainable)
