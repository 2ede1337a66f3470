"""FLOP accounting with attention counted explicitly, from the shapes a forward really uses.

``torch.utils.flop_counter.FlopCounterMode`` works at the ATen level: it counts matmuls and
convolutions well, but on CPU it counts ``scaled_dot_product_attention`` as zero (the
``_scaled_dot_product_flash_attention_for_cpu`` kernel has no formula) and it raises on
FlexAttention (a higher-order operator). For models whose whole point is cheaper attention that
is the number that matters, so :class:`FlopCounter` counts at the Python function level
instead (a ``TorchFunctionMode``):

* ``linear`` -- every ``F.linear``: ``2 * tokens * in * out``;
* ``conv`` -- every ``conv1d/2d/3d``: ``2 * output elements * in/groups * kernel volume``;
* ``attention`` -- every ``scaled_dot_product_attention`` (or SViTT's
  :func:`~leanvl.layers.block_sparse.gathered_attention`) call: ``2*Lq*Lk*d`` (QKᵀ) +
  ``2*Lq*Lk*dv`` (AV) per batch element and head, with the shapes of that call. The block-sparse
  ``gather`` backend attends on ``(.., blocks, block_size, keys_per_block)``, so only the
  blocks it computes are counted; pruned tokens shrink ``Lq`` and ``Lk``. A
  FlexAttention call counts the tiles its block mask lets the kernel compute
  (``kv_num_blocks + full_kv_num_blocks`` tiles of ``Q_BLOCK x KV_BLOCK``), which is what the
  compiled GPU kernel does; FlexAttention's eager CPU fallback materialises all scores anyway;
* ``matmul`` -- every other tensor product (``@``, ``matmul``, ``bmm``, ``mm``, ``einsum``,
  ``addmm``, ``baddbmm``): e.g. SViTT's CLS-attention scoring for token keeping and STAB's
  window attention, at their actual cost.

Softmax, normalisation, activations and additions are not counted (as in FlopCounterMode and in
every paper's FLOP figure). One multiply-add = 2 FLOPs. FLOPs are attributed to the model's
components (top-level submodules, grouped by the caller) with forward hooks.

:func:`count_flops` can also run torch's FlopCounterMode in the same forward; the sum of its
``mm/addmm/bmm/baddbmm/convolution`` counts must equal our ``linear + conv + matmul``
(:attr:`FlopCount.crosscheck`), which checks the formulas against an independent counter.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from leanvl.layers.block_sparse import gathered_attention

__all__ = [
    "AttentionCall",
    "FlopCount",
    "FlopCounter",
    "attention_flops",
    "conv_flops",
    "count_flops",
    "einsum_flops",
    "flex_attention_flops",
    "linear_flops",
    "matmul_flops",
]

CATEGORIES = ("linear", "conv", "attention", "matmul")
# ATen ops whose FlopCounterMode counts correspond to our linear + conv + matmul categories.
_TORCH_MATMUL_OPS = ("mm", "addmm", "bmm", "baddbmm", "convolution", "_convolution")
# Attention functions taking (query, key, value, ...) first.
_ATTENTION_FUNCTIONS = (F.scaled_dot_product_attention, gathered_attention)


def linear_flops(input_shape: torch.Size | tuple[int, ...], out_features: int) -> int:
    """``2 * (tokens) * in_features * out_features`` for ``F.linear`` on ``input_shape``."""
    return 2 * math.prod(input_shape) * out_features


def conv_flops(output_shape: tuple[int, ...], weight_shape: tuple[int, ...]) -> int:
    """``2 * output elements * (in_channels / groups) * kernel volume`` (bias not counted).

    Args:
        output_shape: ``(N, C_out, *spatial)`` (or unbatched ``(C_out, *spatial)``).
        weight_shape: ``(C_out, C_in / groups, *kernel)``.
    """
    return 2 * math.prod(output_shape) * math.prod(weight_shape[1:])


def matmul_flops(a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> int:
    """FLOPs of ``a @ b`` with ``torch.matmul`` semantics (1-D operands, broadcast batches)."""
    a, b = list(a_shape), list(b_shape)
    if not a or not b:
        return 0
    if len(a) == 1:
        a = [1, *a]
    if len(b) == 1:
        b = [*b, 1]
    batch = torch.broadcast_shapes(torch.Size(a[:-2]), torch.Size(b[:-2]))
    return 2 * math.prod(batch) * a[-2] * a[-1] * b[-1]


def einsum_flops(equation: str, shapes: list[tuple[int, ...]]) -> int:
    """FLOPs of a two-operand ``einsum``: ``2 *`` the product of every index size.

    One-operand equations (sums, transposes) count 0. More operands are counted as the
    product over all indices too (what a single fused contraction costs), which is an upper
    bound of torch's pairwise contraction.
    """
    inputs = equation.replace(" ", "").split("->")[0].split(",")
    if len(inputs) < 2 or "..." in equation:
        return 0 if len(inputs) < 2 else _einsum_ellipsis_flops(inputs, shapes)
    sizes: dict[str, int] = {}
    for letters, shape in zip(inputs, shapes, strict=True):
        for letter, size in zip(letters, shape, strict=True):
            sizes[letter] = max(sizes.get(letter, 1), size)
    return 2 * math.prod(sizes.values())


def _einsum_ellipsis_flops(inputs: list[str], shapes: list[tuple[int, ...]]) -> int:
    sizes: dict[str, int] = {}
    batch = torch.Size([])
    for letters, shape in zip(inputs, shapes, strict=True):
        named = letters.replace("...", "")
        extra = len(shape) - len(named)
        head = letters.index("...") if "..." in letters else len(letters)
        batch = torch.broadcast_shapes(batch, torch.Size(shape[head : head + extra]))
        dims = list(shape[:head]) + list(shape[head + extra :])
        for letter, size in zip(named, dims, strict=True):
            sizes[letter] = max(sizes.get(letter, 1), size)
    return 2 * math.prod(sizes.values()) * math.prod(batch)


def attention_flops(
    q_shape: tuple[int, ...], k_shape: tuple[int, ...], v_shape: tuple[int, ...]
) -> int:
    """Dense attention ``softmax(QKᵀ)V``: ``2*Lq*Lk*d + 2*Lq*Lk*dv`` per batch element and head.

    Shapes are ``(..., L, d)`` as passed to ``scaled_dot_product_attention``; leading dims
    broadcast (a block-sparse call has ``(B, H, blocks)`` there). A mask does not reduce the
    count: the kernel computes every score it is handed.
    """
    lq, d = q_shape[-2], q_shape[-1]
    lk, dv = k_shape[-2], v_shape[-1]
    batch = torch.broadcast_shapes(
        torch.Size(q_shape[:-2]), torch.Size(k_shape[:-2]), torch.Size(v_shape[:-2])
    )
    return 2 * math.prod(batch) * lq * lk * (d + dv)


def flex_attention_flops(
    q_shape: tuple[int, ...],
    v_shape: tuple[int, ...],
    kv_num_blocks: torch.Tensor,
    full_kv_num_blocks: torch.Tensor | None,
    q_block: int,
    kv_block: int,
) -> int:
    """FLOPs of the tiles a FlexAttention block mask lets the kernel compute.

    Args:
        q_shape, v_shape: ``(B, H, L, d)`` query and value shapes.
        kv_num_blocks: ``(B|1, H|1, q_blocks)`` partial KV tiles per query tile.
        full_kv_num_blocks: the same for unmasked tiles (None when absent).
        q_block, kv_block: tile sizes.
    """
    b, h, _, d = q_shape
    tiles = int(kv_num_blocks.sum()) * (b // kv_num_blocks.shape[0]) * (h // kv_num_blocks.shape[1])
    if full_kv_num_blocks is not None:
        full = full_kv_num_blocks
        tiles += int(full.sum()) * (b // full.shape[0]) * (h // full.shape[1])
    return 2 * tiles * q_block * kv_block * (d + v_shape[-1])


@dataclass
class AttentionCall:
    """One attention call seen by :class:`FlopCounter`.

    Attributes:
        kind: ``"sdpa"`` or ``"flex"``.
        q_shape, k_shape: shapes of the query and key tensors of the call.
        flops: FLOPs counted for it.
        dense_flops: what dense attention over the same query/key lengths would cost (equals
            ``flops`` for SDPA; larger for a sparse FlexAttention mask).
        component: the component it ran in.
    """

    kind: str
    q_shape: tuple[int, ...]
    k_shape: tuple[int, ...]
    flops: int
    dense_flops: int
    component: str


@dataclass
class FlopCount:
    """Result of :func:`count_flops` (forward pass only).

    Attributes:
        total: all counted FLOPs.
        by_category: FLOPs per category (``linear``, ``conv``, ``attention``, ``matmul``).
        by_component: FLOPs per model component (``"other"`` outside any named component).
        attention_calls: every attention call, in order.
        torch_matmul: FlopCounterMode's count of ``mm/addmm/bmm/baddbmm/convolution`` in the
            same forward outside attention calls (None when it was not run, e.g. with
            FlexAttention); must equal :attr:`non_attention`.
        torch_total: FlopCounterMode's total (it counts SDPA only on GPU, never flex).
    """

    total: int = 0
    by_category: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CATEGORIES, 0))
    by_component: dict[str, int] = field(default_factory=dict)
    attention_calls: list[AttentionCall] = field(default_factory=list)
    torch_matmul: int | None = None
    torch_total: int | None = None

    @property
    def non_attention(self) -> int:
        """``linear + conv + matmul``: the part FlopCounterMode counts the same way."""
        return self.total - self.by_category["attention"]

    @property
    def crosscheck(self) -> float | None:
        """Relative difference of our matmul parts from FlopCounterMode's (None if not run)."""
        if self.torch_matmul is None:
            return None
        return abs(self.non_attention - self.torch_matmul) / max(self.torch_matmul, 1)

    def add(self, category: str, flops: int, component: str) -> None:
        """Record ``flops`` of ``category`` in ``component``."""
        self.total += flops
        self.by_category[category] += flops
        self.by_component[component] = self.by_component.get(component, 0) + flops


_MATMULS = {
    torch.matmul,
    torch.Tensor.matmul,
    torch.Tensor.__matmul__,
    torch.bmm,
    torch.Tensor.bmm,
    torch.mm,
    torch.Tensor.mm,
}
_FUSED_MATMULS = {torch.addmm, torch.Tensor.addmm, torch.baddbmm, torch.Tensor.baddbmm}
_CONVS = {torch.conv1d, torch.conv2d, torch.conv3d, F.conv1d, F.conv2d, F.conv3d}


def _flex_hop():
    try:
        from torch._higher_order_ops.flex_attention import flex_attention
    except ImportError:  # pragma: no cover - torch without FlexAttention
        return None
    return flex_attention


class FlopCounter(TorchFunctionMode):
    """Context manager counting FLOPs of the torch calls made inside it (see the module doc).

    Components: a linear or convolution call belongs to the component owning its weight;
    attention and other matmuls (no weights) to the component of the latest weighted call
    (attention always follows its own Q/K/V projections). Calls before any weighted one go
    to ``"other"``.

    Args:
        model: the model whose parameters name the components (None: everything is
            ``"other"``).
        component_of: parameter name -> component (default: the top-level submodule name).

    Example::

        with FlopCounter(model) as counter:
            model(video)
        counter.result.by_category["attention"]
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        component_of: Callable[[str], str] | None = None,
    ) -> None:
        super().__init__()
        self.result = FlopCount()
        component_of = component_of or (lambda name: name.split(".", 1)[0])
        self._owner: dict[int, str] = {}
        if model is not None:
            for name, param in model.named_parameters(remove_duplicate=False):
                self._owner.setdefault(id(param), component_of(name))
        self._component = "other"
        self._flex = _flex_hop()
        self.torch_counter = None  # a FlopCounterMode running alongside, if any
        self.torch_attention = 0  # FLOPs it counted inside attention calls
        self.saw_flex = False  # a FlexAttention call was entered

    def _weighted(self, weight: torch.Tensor) -> str:
        self._component = self._owner.get(id(weight), self._component)
        return self._component

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        attention = func in _ATTENTION_FUNCTIONS or (self._flex is not None and func is self._flex)
        if func not in _ATTENTION_FUNCTIONS and attention:
            self.saw_flex = True
        if attention and self.torch_counter is not None:
            before = self.torch_counter.get_total_flops()
            out = func(*args, **kwargs)
            self.torch_attention += self.torch_counter.get_total_flops() - before
        else:
            out = func(*args, **kwargs)
        try:
            self._count(func, args, kwargs, out)
        except (TypeError, ValueError, IndexError, AttributeError) as err:
            raise RuntimeError(f"FlopCounter: cannot count {func}: {err}") from err
        return out

    def _count(self, func, args, kwargs, out) -> None:
        if func is F.linear:
            weight = args[1] if len(args) > 1 else kwargs["weight"]
            flops = linear_flops(args[0].shape, weight.shape[0])
            self.result.add("linear", flops, self._weighted(weight))
        elif func in _CONVS:
            weight = args[1] if len(args) > 1 else kwargs["weight"]
            flops = conv_flops(tuple(out.shape), tuple(weight.shape))
            self.result.add("conv", flops, self._weighted(weight))
        elif func in _ATTENTION_FUNCTIONS:
            self._attention(args, kwargs)
        elif func in _MATMULS:
            other = args[1] if len(args) > 1 else kwargs.get("other", kwargs.get("mat2"))
            flops = matmul_flops(tuple(args[0].shape), tuple(other.shape))
            self.result.add("matmul", flops, self._component)
        elif func in _FUSED_MATMULS:
            flops = matmul_flops(tuple(args[1].shape), tuple(args[2].shape))
            self.result.add("matmul", flops, self._component)
        elif func is torch.einsum:
            operands = args[1:]
            if len(operands) == 1 and isinstance(operands[0], list | tuple):
                operands = operands[0]
            shapes = [tuple(t.shape) for t in operands]
            self.result.add("matmul", einsum_flops(args[0], shapes), self._component)
        elif self._flex is not None and func is self._flex:
            self._flex_attention(args)

    def _attention(self, args, kwargs) -> None:
        names = ("query", "key", "value")
        q, k, v = (args[i] if len(args) > i else kwargs[n] for i, n in enumerate(names))
        flops = attention_flops(tuple(q.shape), tuple(k.shape), tuple(v.shape))
        self.result.add("attention", flops, self._component)
        call = AttentionCall("sdpa", tuple(q.shape), tuple(k.shape), flops, flops, self._component)
        self.result.attention_calls.append(call)

    def _flex_attention(self, args) -> None:
        q, k, v, _, block_mask = args[:5]
        ints = [x for x in block_mask if isinstance(x, int)]
        q_block, kv_block = ints[-2], ints[-1]
        flops = flex_attention_flops(
            tuple(q.shape), tuple(v.shape), block_mask[2], block_mask[4], q_block, kv_block
        )
        dense = attention_flops(tuple(q.shape), tuple(k.shape), tuple(v.shape))
        self.result.add("attention", flops, self._component)
        call = AttentionCall("flex", tuple(q.shape), tuple(k.shape), flops, dense, self._component)
        self.result.attention_calls.append(call)


def _torch_matmul_flops(counts: dict) -> tuple[int, int]:
    ops = counts.get("Global", {})
    total = sum(ops.values())
    matmul = sum(n for op, n in ops.items() if str(op).split(".")[-1] in _TORCH_MATMUL_OPS)
    return matmul, total


class _GlobalOnly:
    """Stand-in for FlopCounterMode's ModuleTracker: everything is counted under "Global".

    The tracker's hooks raise on some no-grad forwards (a module input that requires grad
    without a grad_fn); per-module tables are not needed here.
    """

    parents = {"Global"}
    is_bw = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def _involves_flex(err: BaseException) -> bool:
    """Whether ``err`` was raised inside FlexAttention (by message or by traceback)."""
    if "flex_attention" in str(err):
        return True
    tb = err.__traceback__
    while tb is not None:
        if "flex_attention" in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False


def count_flops(
    fn: Callable[[], object],
    model: nn.Module | None = None,
    component_of: Callable[[str], str] | None = None,
    crosscheck: bool = True,
) -> tuple[FlopCount, object]:
    """Run ``fn()`` once and count its FLOPs.

    Args:
        fn: the forward to count (no arguments; close over the model and inputs).
        model: the model, for :attr:`FlopCount.by_component`.
        component_of: parameter name -> component name (default: top-level submodule).
        crosscheck: also run torch's FlopCounterMode in the same call and record its
            matmul/convolution count outside attention calls (:attr:`FlopCount.torch_matmul`;
            where it decomposes SDPA into ``bmm`` -- 5-D inputs on CPU -- those FLOPs belong
            to the attention call and are taken out). Must be False for models that use
            FlexAttention: FlopCounterMode breaks it (and a failed first FlexAttention call
            leaves dynamo unable to run it again in the process).

    Returns:
        ``(FlopCount, fn's return value)``.
    """
    if crosscheck:
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounter(model, component_of)
        torch_counter = FlopCounterMode(display=False)
        torch_counter.mod_tracker = _GlobalOnly()
        counter.torch_counter = torch_counter
        try:
            with counter, torch_counter:
                out = fn()
        except Exception as err:
            # FlopCounterMode (a dispatch mode) breaks FlexAttention in several ways
            # (NotImplementedError, TypeError, dynamo's Unsupported).
            if counter.saw_flex or _involves_flex(err):
                raise RuntimeError(
                    "count_flops: torch's FlopCounterMode cannot run FlexAttention; "
                    "use crosscheck=False for this model"
                ) from err
            raise
        else:
            matmul, total = _torch_matmul_flops(torch_counter.get_flop_counts())
            result = counter.result
            result.torch_matmul = matmul - counter.torch_attention
            result.torch_total = total
            return result, out
    counter = FlopCounter(model, component_of)
    with counter:
        out = fn()
    return counter.result, out
