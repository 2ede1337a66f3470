"""CUDA checks of SViTT's attention backends (skipped without a GPU; CI has none).

On a GPU the ``flex`` backend runs the compiled FlexAttention kernel with a backward (on CPU the
kernel runs for inference only), so these tests are the only ones that exercise the kernel
SViTT trains with on GPU, in both layouts (128-token tiles, and the tile-aligned one that
``LEANVL_FLEX_TILED=1`` selects): ``flex`` and ``gather`` must equal the loop-free dense
computation with the same mask, forward and backward, and the whole SViTT video encoder must
give the same outputs and gradients with either backend for the same recorded block tables.

Run on a GPU machine: ``pytest tests/gpu -q`` (float32, TF32 off).
"""

from __future__ import annotations

import pytest
import torch

from leanvl.layers.block_sparse import BlockSparse, block_sparse_attention
from leanvl.layers.rel_pos_3d import RelativePositionBias3D
from leanvl.registry import create_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

DEVICE = "cuda"


@pytest.fixture(autouse=True)
def _no_tf32():
    """Exact float32 matmuls: TF32 would hide real differences behind 1e-3 noise."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _masked_dense(q, k, v, pos, bias, layout, key_blocks):
    """Dense attention with the block pattern as an explicit mask (padded slots as officially:
    zero key and value at the CLS position, unmasked)."""
    b, h, s, d = q.shape
    n, bs = s - 1, layout.block_size
    nb = key_blocks.shape[0]
    pad = nb * bs - n
    qp, kp, vp = (torch.nn.functional.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
    full = torch.nn.functional.pad(pos, (0, pad)).expand(b, -1)
    logits = (qp @ kp.transpose(-1, -2)) * d**-0.5 + bias(full, full)
    allowed = torch.zeros(nb, nb, dtype=torch.bool, device=q.device)
    allowed[torch.arange(nb, device=q.device)[:, None], key_blocks] = True
    token_block = (torch.arange(1 + nb * bs, device=q.device) - 1).clamp(min=0) // bs
    mask = allowed[token_block[:, None], token_block[None, :]]
    mask[:, 0] = True  # every query sees CLS
    mask[0] = torch.arange(1 + nb * bs, device=q.device) <= n  # CLS sees every real key
    logits = logits.masked_fill(~mask, float("-inf"))
    return (logits.softmax(-1) @ vp)[:, :, : 1 + n]


@pytest.mark.parametrize("backend", ["gather", "flex", "flex_tiled"])
def test_backend_equals_masked_dense_forward_and_backward(backend: str, monkeypatch) -> None:
    if backend == "flex_tiled":  # the tile-aligned layout (64-token tiles for 56-token blocks)
        monkeypatch.setenv("LEANVL_FLEX_TILED", "1")
        backend = "flex"
    # SViTT-B's pattern at 2 frames of 14x14 patches: blocks of 56 tokens, 1 local + 3 random.
    frames, grid, heads, dim = 2, 14, 4, 64
    torch.manual_seed(0)
    bias = RelativePositionBias3D(frames, grid, grid, heads).to(DEVICE)
    with torch.no_grad():
        bias.table.normal_()
    s = 1 + frames * grid * grid
    q, k, v = (torch.randn(2, heads, s, dim, device=DEVICE, requires_grad=True) for _ in range(3))
    pos = torch.arange(s, device=DEVICE)[None]
    layout = BlockSparse(block_size=56, local=1, random=3)
    table = layout.draw_random_blocks(layout.num_blocks(s - 1), device=DEVICE)
    key_blocks = layout.key_blocks(table)

    out, _ = block_sparse_attention(q, k, v, pos, bias, layout, table, backend=backend)
    ref = _masked_dense(q, k, v, pos, bias, layout, key_blocks)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)

    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, (q, k, v, bias.table), grad)
    want = torch.autograd.grad(ref, (q, k, v, bias.table), grad)
    for name, a, b in zip(("q", "k", "v", "bias table"), got, want, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("tiled", [False, True])
def test_svitt_video_encoder_flex_equals_gather_on_cuda(tiled: bool, monkeypatch) -> None:
    # The whole sparse encoder (edge + node sparsity), same weights and recorded block tables.
    if tiled:
        monkeypatch.setenv("LEANVL_FLEX_TILED", "1")
    torch.manual_seed(0)
    gather = create_model("svitt_tiny", attention_backend="gather").to(DEVICE).eval()
    flex = create_model("svitt_tiny", attention_backend="flex").to(DEVICE).eval()
    flex.load_state_dict(gather.state_dict())
    with torch.no_grad():
        for model in (gather, flex):  # non-zero position bias, so the score_mod is exercised
            for name, p in model.named_parameters():
                if "rel_pos" in name or "table" in name:
                    p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    cfg = gather.config
    video = torch.randn(2, cfg.num_frames, 3, cfg.image_size, cfg.image_size, device=DEVICE)
    recorded = gather.encode_video(video, generator=torch.Generator(DEVICE).manual_seed(3))
    tables = recorded.random_blocks
    assert tables is not None and len(tables) > 0
    out_g = gather.encode_video(video, random_blocks=tables)
    out_f = flex.encode_video(video, random_blocks=tables)
    torch.testing.assert_close(out_f.tokens, out_g.tokens, atol=1e-4, rtol=1e-4)
    out_g.tokens.square().mean().backward()
    out_f.tokens.square().mean().backward()
    grads_g = dict(gather.named_parameters())
    for name, p in flex.named_parameters():
        if p.grad is None:
            assert grads_g[name].grad is None, name
            continue
        torch.testing.assert_close(p.grad, grads_g[name].grad, atol=1e-4, rtol=1e-3, msg=name)
