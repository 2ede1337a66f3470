"""FLOP accounting equals hand-computed counts on small configs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from leanvl.bench.flops import (
    FlopCounter,
    attention_flops,
    count_flops,
    einsum_flops,
    matmul_flops,
)
from leanvl.layers.block_sparse import BlockSparse, block_sparse_attention
from leanvl.layers.sparse_beit import SparseBEiTConfig, SparseVideoBEiT


def test_single_linear_and_conv_match_hand_counts_and_flopcountermode():
    linear, conv = nn.Linear(8, 16), nn.Conv2d(3, 4, kernel_size=2, stride=2)
    x, image = torch.randn(5, 7, 8), torch.randn(2, 3, 8, 8)
    count, _ = count_flops(lambda: (linear(x), conv(image)))
    assert count.by_category["linear"] == 2 * 35 * 8 * 16  # 8960
    # output (2, 4, 4, 4) = 128 elements, each 3 * 2 * 2 multiply-adds
    assert count.by_category["conv"] == 2 * 128 * 12
    assert count.total == 8960 + 3072
    assert count.torch_matmul == count.non_attention == count.total
    assert count.crosscheck == 0.0


def test_tiny_attention_counted_explicitly_where_flopcountermode_sees_nothing():
    q, k, v = torch.randn(2, 3, 10, 8), torch.randn(2, 3, 12, 8), torch.randn(2, 3, 12, 8)
    count, _ = count_flops(lambda: F.scaled_dot_product_attention(q, k, v))
    # QK^T: 2*10*12*8, AV: 2*10*12*8, per batch element (2) and head (3).
    assert count.by_category["attention"] == count.total == 2 * 3 * 4 * 10 * 12 * 8
    assert count.torch_total == 0  # FlopCounterMode counts the fused CPU kernel as zero
    (call,) = count.attention_calls
    assert (call.kind, call.q_shape, call.k_shape) == ("sdpa", (2, 3, 10, 8), (2, 3, 12, 8))


def test_attention_that_torch_decomposes_is_not_double_counted():
    # value width != key width: CPU SDPA falls back to bmm ops, which FlopCounterMode counts
    q, k, v = torch.randn(2, 3, 10, 8), torch.randn(2, 3, 12, 8), torch.randn(2, 3, 12, 4)
    count, _ = count_flops(lambda: F.scaled_dot_product_attention(q, k, v))
    assert count.by_category["attention"] == 2 * 3 * (2 * 10 * 12 * 8 + 2 * 10 * 12 * 4)
    assert count.torch_total == count.total  # torch's bmm counts agree with ours
    assert count.torch_matmul == 0 == count.non_attention


def test_matmul_and_einsum_formulas():
    assert matmul_flops((4, 5), (5, 6)) == 240
    assert matmul_flops((5,), (5, 6)) == 60
    assert matmul_flops((3, 1, 4, 5), (2, 5, 6)) == 2 * 6 * 4 * 5 * 6
    assert einsum_flops("bqd,bkd->bqk", [(2, 3, 4), (2, 5, 4)]) == 2 * 2 * 3 * 4 * 5
    assert einsum_flops("...qd,...kd->...qk", [(2, 3, 4), (2, 5, 4)]) == 2 * 2 * 3 * 4 * 5
    assert einsum_flops("ij->ji", [(3, 4)]) == 0
    a, b = torch.randn(2, 3, 4), torch.randn(2, 5, 4)
    count, _ = count_flops(lambda: (torch.einsum("bqd,bkd->bqk", a, b), a @ b.transpose(1, 2)))
    assert count.by_category["matmul"] == 2 * 240 == count.torch_matmul


def test_block_sparse_layout_counts_only_computed_blocks():
    b, h, n, d = 2, 3, 40, 8  # 40 patch tokens + CLS, blocks of 8 -> 5 blocks
    q, k, v = (torch.randn(b, h, 1 + n, d) for _ in range(3))
    layout = BlockSparse(block_size=8, local=1, random=2)
    table = layout.draw_random_blocks(5, generator=torch.Generator().manual_seed(0))
    positions = torch.arange(1 + n)[None]

    def sparse():
        return block_sparse_attention(q, k, v, positions, None, layout, table, "gather")

    count, _ = count_flops(sparse)
    # each of the 5 query blocks (8 rows) attends to CLS + 1 local + 2 random blocks = 25 keys
    assert count.by_category["attention"] == b * h * 5 * 8 * 25 * (2 * d + 2 * d)
    # the CLS row is dense over all 41 keys: scores and weighted values as matmuls
    assert count.by_category["matmul"] == 2 * (2 * b * h * (1 + n) * d)
    assert count.crosscheck == 0.0  # FlopCounterMode's bmm of the 5-D SDPA is taken out
    dense, _ = count_flops(lambda: block_sparse_attention(q, k, v, positions, None, None))
    assert dense.by_category["attention"] == attention_flops(q.shape, k.shape, v.shape)
    assert dense.by_category["attention"] == b * h * 41 * 41 * 4 * d


def test_flex_backend_counts_the_tiles_of_its_block_mask():
    pytest.importorskip("torch.nn.attention.flex_attention")
    b, h, n, d = 1, 2, 40, 8
    q, k, v = (torch.randn(b, h, 1 + n, d) for _ in range(3))
    layout = BlockSparse(block_size=8, local=1, random=2)
    table = layout.draw_random_blocks(5, generator=torch.Generator().manual_seed(0))
    positions = torch.arange(1 + n)[None]
    count, _ = count_flops(
        lambda: block_sparse_attention(q, k, v, positions, None, layout, table, "flex"),
        crosscheck=False,  # FlopCounterMode cannot run FlexAttention
    )
    (call,) = count.attention_calls
    # On CPU the layout is tile-aligned: 8 x 8 tiles, tile 0 = CLS (+ 7 masked slots), tile
    # 1 + m = block m. The CLS row visits all 6 tiles; each block row visits the CLS tile and
    # its 3 distinct table blocks: 6 + 5 * 4 = 26 tiles per (batch, head).
    assert call.kind == "flex"
    assert all(len(set(row)) == 3 for row in layout.key_blocks(table).tolist())
    assert call.flops == b * h * 26 * 8 * 8 * (2 * d + 2 * d)
    assert call.dense_flops == b * h * 48 * 48 * 4 * d  # dense over the kernel's 6 tiles
    assert count.torch_matmul is None  # FlopCounterMode cannot run on FlexAttention


def test_token_pruned_encoder_matches_hand_count():
    cfg = SparseBEiTConfig(
        image_size=32, patch_size=16, num_frames=2, width=16, depth=2, heads=2, mlp=32,
        keep_rate=0.5, drop_layers=(0,),
    )  # fmt: skip
    encoder = SparseVideoBEiT(cfg).eval()
    video = torch.randn(1, 2, 3, 32, 32)
    with torch.no_grad():
        count, (hidden, out) = count_flops(lambda: encoder(video), encoder)
    s0, s1 = 1 + 2 * 4, 1 + math.ceil(0.5 * 8)  # 9 tokens, then CLS + 4 kept
    assert hidden.shape[1] == s1
    d, m, heads = 16, 32, 2
    per_token_linear = 2 * (4 * d * d + 2 * d * m)  # q, k, v, proj; fc1, fc2
    assert count.by_category["linear"] == per_token_linear * (s0 + s1)
    assert count.by_category["conv"] == 2 * (2 * d * 2 * 2) * (3 * 16 * 16)
    assert count.by_category["attention"] == 4 * heads * (d // heads) * (s0**2 + s1**2)
    # CLS-attention scores for token keeping: one query row per layer
    assert count.by_category["matmul"] == 2 * heads * (d // heads) * (s0 + s1)
    assert count.crosscheck == 0.0
    assert count.by_component == {"patch_embed": count.by_category["conv"],
                                  "blocks": count.total - count.by_category["conv"]}  # fmt: skip


def test_components_follow_weights_and_attention_follows_its_projection():
    model = nn.ModuleDict({"a": nn.Linear(4, 4), "b": nn.Linear(4, 4)})
    x = torch.randn(1, 3, 4)

    def forward():
        y = model["b"](x)
        F.scaled_dot_product_attention(y[None], y[None], y[None])
        return model["a"](y)

    with FlopCounter(model) as counter:
        forward()
    result = counter.result
    assert result.by_component == {"b": 96 + 2 * 2 * 3 * 3 * 4, "a": 96}
