"""Block-sparse attention, 3D relative position bias and token keeping (SViTT layers)."""

from __future__ import annotations

import math

import pytest
import torch

from leanvl.layers.block_sparse import (
    BlockSparse,
    _GatheredAttention,
    block_sparse_attention,
    dense_attention,
)
from leanvl.layers.rel_pos_3d import (
    RelativePositionBias3D,
    num_relative_positions,
    resample_temporal_table,
)
from leanvl.layers.token_keep import keep_count, keep_top_tokens


def _qkv(b: int, h: int, s: int, d: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(b, h, s, d, generator=g) for _ in range(3))


def _bias(frames: int, grid: int, heads: int, seed: int = 1) -> RelativePositionBias3D:
    bias = RelativePositionBias3D(frames, grid, grid, heads)
    with torch.no_grad():
        bias.table.normal_(generator=torch.Generator().manual_seed(seed))
    return bias


def _official_index(frames: int, h: int, w: int) -> torch.Tensor:
    """The (1+Thw)^2 index built the BEiT way (coordinates, shifted offsets, 3 CLS rows)."""
    coords = torch.stack(
        torch.meshgrid(torch.arange(frames), torch.arange(h), torch.arange(w), indexing="ij")
    ).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
    rel[..., 0] += frames - 1
    rel[..., 1] += h - 1
    rel[..., 2] += w - 1
    rel[..., 0] *= (2 * h - 1) * (2 * w - 1)
    rel[..., 1] *= 2 * w - 1
    p = (2 * frames - 1) * (2 * h - 1) * (2 * w - 1)
    s = 1 + frames * h * w
    index = torch.zeros(s, s, dtype=torch.long)
    index[1:, 1:] = rel.sum(-1)
    index[0, 0:] = p
    index[0:, 0] = p + 1
    index[0, 0] = p + 2
    return index


def test_relative_index_matches_the_beit_construction() -> None:
    bias = RelativePositionBias3D(3, 2, 3, heads := 2)
    pos = torch.arange(1 + 3 * 2 * 3)
    assert torch.equal(bias.index(pos, pos), _official_index(3, 2, 3))
    assert bias.table.shape == (num_relative_positions(3, 2, 3), heads) == (5 * 3 * 5 + 3, 2)


def test_resample_follows_interpolate_nearest() -> None:
    # 4 -> 8 frames: offsets -7..7 read the old offsets -3,-3,-3,-2,-2,-1,-1,0,0,1,1,2,2,3,3.
    span = 3 * 3
    table = torch.arange(num_relative_positions(4, 2, 2), dtype=torch.float)[:, None]
    new = resample_temporal_table(table, 4, 8, 2, 2)
    assert new.shape == (15 * span + 3, 1)
    offsets = new[:-3, 0].reshape(15, span)[:, 0] // span - 3
    assert offsets.tolist() == [-3, -3, -3, -2, -2, -1, -1, 0, 0, 1, 1, 2, 2, 3, 3]
    assert torch.equal(new[-3:], table[-3:])
    with pytest.raises(ValueError, match="expected 66"):
        resample_temporal_table(table[:-1], 4, 8, 2, 2)


def test_random_blocks_follow_the_official_rule() -> None:
    layout = BlockSparse(block_size=4, local=1, random=3)
    torch.manual_seed(3)
    table = layout.draw_random_blocks(10)
    torch.manual_seed(3)
    rand = torch.rand(10, 10)
    rand[torch.arange(10), torch.arange(10)] = 0
    assert torch.equal(table, rand.topk(3, dim=-1).indices.sort(dim=-1).values)
    assert not (table == torch.arange(10)[:, None]).any()  # never the own block
    first = layout.draw_random_blocks(10, generator=torch.Generator().manual_seed(5))
    again = layout.draw_random_blocks(10, generator=torch.Generator().manual_seed(5))
    assert torch.equal(first, again)
    # fewer blocks than random ones: every block once (the official code would raise)
    assert layout.draw_random_blocks(2).tolist() == [[0, 1], [0, 1]]


def _grads(fn, q, k, v, bias, seed: int = 9) -> list[torch.Tensor]:
    """Gradients of q, k, v and the bias table for a fixed random cotangent of (out, cls)."""
    for t in (q, k, v, bias.table):
        t.grad = None
    out, cls = fn()
    g = torch.Generator().manual_seed(seed)
    cotangents = [torch.randn(out.shape, generator=g), torch.randn(cls.shape, generator=g)]
    torch.autograd.backward([out, cls], cotangents)
    return [t.grad.clone() for t in (q, k, v, bias.table)]


@pytest.mark.parametrize("pruned", [False, True])
def test_gather_equals_dense_when_every_block_is_attended(pruned: bool) -> None:
    # 3 frames of 2x2 patches = 12 tokens in 4 blocks of 3; own block + 3 random = all blocks.
    # ``pruned``: per-sample positions, as after token dropping (the bias is then per sample).
    bias = _bias(3, 2, heads=2)
    q, k, v = (t.requires_grad_() for t in _qkv(2, 2, 13, 8))
    pos = torch.arange(13)[None]
    if pruned:
        kept = torch.tensor([1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, 15])
        pos = torch.stack([pos[0], torch.cat([torch.zeros(1, dtype=torch.long), kept])])
        bias = _bias(4, 2, heads=2)
    layout = BlockSparse(block_size=3, local=1, random=3)
    table = layout.draw_random_blocks(4)

    def dense():
        return dense_attention(q, k, v, pos, bias)

    def gather():
        return block_sparse_attention(q, k, v, pos, bias, layout, table, backend="gather")

    (ref, ref_cls), (out, cls) = dense(), gather()
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cls, ref_cls)
    assert torch.allclose(cls.sum(-1), torch.ones(2, 2))
    for name, got, want in zip(
        ["q", "k", "v", "table"],
        _grads(gather, q, k, v, bias),
        _grads(dense, q, k, v, bias),
        strict=True,
    ):
        torch.testing.assert_close(
            got, want, atol=1e-5, rtol=1e-5, msg=lambda m, n=name: f"{n}: {m}"
        )


def _reference(q, k, v, pos, bias, layout, key_blocks, value_blocks):
    """Loop reference: each query over [CLS] + listed blocks; padded slots zero at position 0.

    Keys come from ``key_blocks``, values and bias positions from ``value_blocks``.
    """
    b, h, s, d = q.shape
    n, bs = s - 1, layout.block_size
    out = torch.zeros_like(q)

    def slots(blocks):
        return [0] + [1 + blk * bs + j for blk in blocks.tolist() for j in range(bs)]

    def take(x, idx):
        return torch.stack([x[:, :, j] if j <= n else torch.zeros(b, h, d) for j in idx], 2)

    for i in range(n):
        k_slots, v_slots = slots(key_blocks[i // bs]), slots(value_blocks[i // bs])
        keys, vals = take(k, k_slots), take(v, v_slots)
        kpos = torch.tensor([j if j <= n else 0 for j in v_slots])
        logits = (q[:, :, 1 + i, None] @ keys.transpose(-1, -2))[:, :, 0] / math.sqrt(d)
        logits = logits + bias(pos[:, 1 + i, None], kpos[None])[:, :, 0]
        if layout.mask_padding:
            logits[..., torch.tensor(k_slots) > n] = float("-inf")
        out[:, :, 1 + i] = (logits.softmax(-1)[:, :, None] @ vals)[:, :, 0]
    return out


@pytest.mark.parametrize(
    ("local", "mask_padding", "mirrored"),
    [(1, False, True), (1, True, True), (3, False, True), (3, False, False)],
)
def test_gather_matches_a_loop_reference(local: int, mask_padding: bool, mirrored: bool) -> None:
    # 2 frames x 3x3 patches = 18 tokens, blocks of 4 -> 5 blocks, last one has 2 padded slots.
    bias = _bias(2, 3, heads=2)
    q, k, v = _qkv(2, 2, 19, 4, seed=7)
    pos = torch.arange(19)[None]
    layout = BlockSparse(4, local, random=2, mask_padding=mask_padding, mirrored_local=mirrored)
    table = layout.draw_random_blocks(5, generator=torch.Generator().manual_seed(0))
    q, k, v = (t.requires_grad_() for t in (q, k, v))

    def gather():
        return block_sparse_attention(q, k, v, pos, bias, layout, table, backend="gather")

    out, _ = gather()
    keys, values = layout.key_blocks(table), layout.key_blocks(table, values=True)
    assert torch.equal(keys, values) == (local == 1 or not mirrored)
    ref = _reference(q, k, v, pos, bias, layout, keys, values)
    torch.testing.assert_close(out[:, :, 1:], ref[:, :, 1:], atol=1e-5, rtol=1e-5)
    dense_cls = dense_attention(q, k, v, pos, bias)[0][:, :, 0]
    torch.testing.assert_close(out[:, :, 0], dense_cls, atol=1e-5, rtol=1e-5)

    # Backward (the hand-written one) against autograd through the loop reference.
    def reference():
        full = _reference(q, k, v, pos, bias, layout, keys, values)
        dense_out, cls = dense_attention(q, k, v, pos, bias)
        return torch.cat([dense_out[:, :, :1], full[:, :, 1:]], dim=2), cls

    for got, want in zip(
        _grads(gather, q, k, v, bias), _grads(reference, q, k, v, bias), strict=True
    ):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("masked", [False, True])
def test_gathered_attention_backward_passes_gradcheck(masked: bool) -> None:
    # float64, a bias broadcast over the batch (as before pruning) and optionally masked keys.
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 2, 3, 4, 5, dtype=torch.float64, generator=g)
    k, v = (torch.randn(2, 2, 3, 6, 5, dtype=torch.float64, generator=g) for _ in range(2))
    bias = torch.randn(1, 2, 3, 4, 6, dtype=torch.float64, generator=g)
    mask = torch.zeros(3, 1, 6, dtype=torch.bool)
    mask[2, :, 4:] = masked
    inputs = tuple(t.requires_grad_() for t in (q, k, v, bias))
    assert torch.autograd.gradcheck(lambda *x: _GatheredAttention.apply(*x, mask), inputs)


def test_gather_trains_under_autocast() -> None:
    # float32 inputs, bfloat16 autocast for the forward only (the backward runs outside it, as
    # in mixed-precision training): float32 gradients close to the float32 ones.
    bias = _bias(2, 3, heads=2)
    q, k, v = (t.requires_grad_() for t in _qkv(2, 2, 19, 8, seed=3))
    pos = torch.arange(19)[None]
    layout = BlockSparse(4, 1, random=2)
    table = layout.draw_random_blocks(5, generator=torch.Generator().manual_seed(0))

    def gather():
        return block_sparse_attention(q, k, v, pos, bias, layout, table, backend="gather")

    def autocast_gather():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return gather()

    for got, want in zip(
        _grads(autocast_gather, q, k, v, bias), _grads(gather, q, k, v, bias), strict=True
    ):
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, want, atol=0.05, rtol=0.02)


def test_unmasked_padding_changes_the_last_block_only() -> None:
    bias = _bias(2, 3, heads=1)
    q, k, v = _qkv(1, 1, 19, 4, seed=2)
    pos = torch.arange(19)[None]
    table = torch.tensor([[1], [2], [3], [4], [0]])
    faithful = block_sparse_attention(q, k, v, pos, bias, BlockSparse(4, 1, 1), table)[0]
    fixed = block_sparse_attention(q, k, v, pos, bias, BlockSparse(4, 1, 1, True), table)[0]
    differs = (faithful - fixed).abs().amax(dim=-1)[0, 0] > 1e-6
    # blocks whose key set contains block 4 (the padded one): block 3 (random) and block 4 (own)
    expected = torch.zeros(19, dtype=torch.bool)
    expected[1 + 12 : 1 + 18] = True
    assert torch.equal(differs, expected)


def test_keep_count_uses_ceil() -> None:
    counts = [784]
    for _ in range(3):
        counts.append(keep_count(0.7, counts[-1]))
    assert counts == [784, 549, 385, 270]
    counts = [1568]
    for _ in range(3):
        counts.append(keep_count(0.6, counts[-1]))
    assert counts == [1568, 941, 565, 339]


def test_keep_top_tokens_keeps_cls_and_order() -> None:
    x = torch.arange(6, dtype=torch.float)[None, :, None].repeat(2, 1, 1)  # token i has value i
    scores = torch.tensor([[0.1, 0.9, 0.3, 0.8, 0.2], [0.5, 0.1, 0.2, 0.3, 0.4]])
    kept = keep_top_tokens(x, scores, 0.5)  # ceil(2.5) = 3
    assert kept.kept.tolist() == [[1, 2, 3], [0, 3, 4]]
    assert kept.tokens[..., 0].tolist() == [[0, 2, 3, 4], [0, 1, 4, 5]]


def test_flex_backend_equals_gather_with_pruned_positions() -> None:
    # per-sample positions (as after token dropping) and a padded last block
    bias = _bias(2, 3, heads=2)
    q, k, v = _qkv(2, 2, 19, 4, seed=4)
    kept = torch.randperm(18, generator=torch.Generator().manual_seed(0))[:18].sort().values
    pos = torch.stack([torch.arange(19), torch.cat([torch.zeros(1, dtype=torch.long), kept + 1])])
    layout = BlockSparse(block_size=4, local=1, random=2)
    table = layout.draw_random_blocks(5, generator=torch.Generator().manual_seed(1))
    ref, ref_cls = block_sparse_attention(q, k, v, pos, bias, layout, table, backend="gather")
    with torch.no_grad():  # the bias table is a parameter; FlexAttention has no CPU backward
        out, cls = block_sparse_attention(q, k, v, pos, bias, layout, table, backend="flex")
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cls, ref_cls)


def test_flex_is_eager_under_a_torch_function_mode(monkeypatch) -> None:
    # The FLOP counter is a TorchFunctionMode: dynamo cannot trace its hooks, so the compiled
    # kernel must not be used while one is active (seen on an H200).
    from torch.nn.attention.flex_attention import flex_attention
    from torch.overrides import TorchFunctionMode

    import leanvl.layers.block_sparse_flex as flex_mod

    monkeypatch.setattr(flex_mod, "_COMPILED", None)
    monkeypatch.delenv("LEANVL_FLEX_EAGER", raising=False)
    with TorchFunctionMode():
        assert flex_mod._flex(compiled=True) is flex_attention
    compiled = flex_mod._flex(compiled=True)  # compiles lazily: nothing runs here
    assert compiled is not flex_attention and flex_mod._flex(compiled=True) is compiled
    assert flex_mod._flex(compiled=False) is flex_attention
    monkeypatch.setenv("LEANVL_FLEX_EAGER", "1")
    assert flex_mod._flex(compiled=True) is flex_attention


@pytest.mark.parametrize("mask_padding", [False, True])
@pytest.mark.parametrize(("block_size", "tile"), [(4, 4), (4, 8)])
def test_compiled_tiled_flex_equals_gather(monkeypatch, mask_padding, block_size, tile) -> None:
    # The tile-aligned layout, compiled (the CPU inference path; tile > block is the layout
    # LEANVL_FLEX_TILED=1 gives a GPU), its block mask read from the block table: a repeated
    # block and a padded last block included.
    from leanvl.layers.block_sparse_flex import _flex_tiled

    monkeypatch.delenv("LEANVL_FLEX_EAGER", raising=False)
    bias = _bias(2, 3, heads=2)
    q, k, v = _qkv(1, 2, 19, 8, seed=5)
    pos = torch.arange(19)[None]
    layout = BlockSparse(block_size=block_size, local=1, random=2, mask_padding=mask_padding)
    table = torch.tensor([[1, 2], [0, 3], [0, 1], [1, 4], [0, 0]])  # row 4 lists block 0 twice
    with torch.no_grad():
        key_blocks = layout.key_blocks(table)
        out = _flex_tiled(q, k, v, pos, bias, layout, key_blocks, tile)
        ref, _ = block_sparse_attention(q, k, v, pos, bias, layout, table, backend="gather")
    # gather counts a block listed twice twice; a mask can only allow it once
    torch.testing.assert_close(out[:, :, :17], ref[:, :, :17], atol=1e-5, rtol=1e-5)
    keys = torch.cat([k[:, :, :5], k[:, :, 17:]], 2)  # CLS, block 0 (once), block 4
    vals = torch.cat([v[:, :, :5], v[:, :, 17:]], 2)
    kpos = torch.cat([pos[:, :5], pos[:, 17:]], 1)
    qpos = pos[:, 17:]
    scores = q[:, :, 17:] @ keys.transpose(-1, -2) / 8**0.5 + bias(qpos, kpos)
    if not mask_padding:  # the 2 padded key slots of block 4: zero key and value, CLS bias
        pad_bias = bias(qpos, torch.zeros(1, 2, dtype=torch.long))
        scores = torch.cat([scores, pad_bias], -1)
        vals = torch.cat([vals, torch.zeros_like(vals[:, :, :2])], 2)
    expected = scores.softmax(-1) @ vals
    torch.testing.assert_close(out[:, :, 17:], expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("tile", [3, 4])
def test_compiled_tiled_flex_equals_its_mask_on_short_sequences(monkeypatch, tile) -> None:
    # Fewer blocks than local + random (the table repeats blocks): the block mask built from the
    # table (compiled kernel) must allow exactly what the mask function allows (eager reference).
    from leanvl.layers.block_sparse_flex import _flex_tiled

    q, k, v = _qkv(2, 2, 6, 4, seed=6)
    pos = torch.arange(6)[None]
    layout = BlockSparse(block_size=3, local=1, random=3)
    table = layout.draw_random_blocks(2, generator=torch.Generator().manual_seed(2))
    assert table.shape == (2, 2)
    key_blocks = layout.key_blocks(table)
    with torch.no_grad():
        monkeypatch.setenv("LEANVL_FLEX_EAGER", "1")
        eager = _flex_tiled(q, k, v, pos, _bias(1, 3, heads=2), layout, key_blocks, tile)
        monkeypatch.delenv("LEANVL_FLEX_EAGER")
        compiled = _flex_tiled(q, k, v, pos, _bias(1, 3, heads=2), layout, key_blocks, tile)
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=1e-5)


def test_flex_on_cpu_refuses_training_with_a_clear_error() -> None:
    q, k, v = (t.requires_grad_() for t in _qkv(1, 2, 9, 4))
    layout = BlockSparse(block_size=4, local=1, random=1)
    table = layout.draw_random_blocks(2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(NotImplementedError, match="attention_backend='gather'"):
        block_sparse_attention(q, k, v, torch.arange(9)[None], None, layout, table, "flex")
    with torch.no_grad():  # inference is fine
        block_sparse_attention(q, k, v, torch.arange(9)[None], None, layout, table, "flex")


@pytest.mark.parametrize("mask_padding", [False, True])
def test_padded_flex_layout_equals_gather(mask_padding) -> None:
    # The GPU's default layout (the kernel's own tiles over [CLS, tokens, padding]) run through
    # the eager reference on CPU, so its mask and bias logic stay covered without a GPU.
    from leanvl.layers.block_sparse_flex import _flex_padded

    bias = _bias(2, 3, heads=2)
    q, k, v = _qkv(1, 2, 19, 8, seed=7)
    pos = torch.arange(19)[None]
    layout = BlockSparse(block_size=4, local=1, random=2, mask_padding=mask_padding)
    table = layout.draw_random_blocks(5, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = _flex_padded(q, k, v, pos, bias, layout, layout.key_blocks(table))
        ref, _ = block_sparse_attention(q, k, v, pos, bias, layout, table, backend="gather")
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
