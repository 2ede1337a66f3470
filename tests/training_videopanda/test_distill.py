"""Distillation parts: frame-token positions in the spliced sequence, the head, the loss, and
the training-only registration that keeps checkpoints plain."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from leanvl.checkpoint import load, save_model
from leanvl.registry import create_model
from leanvl.training.families.videopanda_distill import (
    DistillationHead,
    TeacherConfig,
    _teacher_targets,
    attach_training_module,
    build_teacher,
    default_layers,
    distillation_loss,
    frame_token_positions,
)
from leanvl.video.transforms import videopanda_anypixel


def _tiny():
    torch.manual_seed(0)
    model = create_model(
        "videopanda_tiny", image_size=32, num_frames=4, gstra_dropout=0.0, fusion_dropout=0.0
    )
    return model.eval()


def _frames(b: int, t: int = 4, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    clips = torch.randint(0, 255, (b, t, 3, 24, 32), generator=g, dtype=torch.uint8)
    return torch.stack(
        [
            videopanda_anypixel(c, image_size=size, teacher_size=size // 2, patch=4, num_frames=t)
            for c in clips
        ]
    )


def test_default_layers():
    assert default_layers(32) == [32, 28, 24, 20, 16, 12, 8, 4, 0]
    assert default_layers(2) == [2, 1, 0]


def test_positions_pick_the_spatial_frame_tokens():
    model = _tiny()
    frames = _frames(2)  # 4:3 frames: letterboxed, grids smaller than the canvas
    ids = torch.tensor([[1, 5, -200, -200, -200, -200, 7, 8], [1, -200, -200, -200, -200, 9, 0, 0]])
    mask = torch.tensor([[1] * 8, [1] * 6 + [0, 0]])
    with torch.no_grad():
        tokens, grids = model.encode_videos(frames)
        spliced = model.splice(ids, tokens, mask)
    positions = frame_token_positions(ids, mask, grids)
    assert len(positions) == 8
    for b, f, pos in positions:
        h, w = grids[f].tolist()
        rows = tokens[f][1:].view(h, w + 1, -1)[:, :w].reshape(h * w, -1)  # no ctx, no <row>
        assert torch.equal(spliced.inputs_embeds[b, pos], rows)
    assert grids[0].tolist() == [3, 4]  # 24x32 -> 12 of 16 patch rows valid -> 3x4 LSD grid


def test_teacher_targets_crop_and_resize():
    feats = torch.arange(16 * 2, dtype=torch.float).view(16, 2)  # 4x4 grid, width 2
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[1:3] = True  # the middle two rows are valid
    same = _teacher_targets(feats, mask, 2, 4)
    assert torch.equal(same, feats.view(4, 4, 2)[1:3].reshape(8, 2))
    pooled = _teacher_targets(feats, mask, 1, 2)
    assert torch.allclose(pooled, feats.view(4, 4, 2)[1:3].reshape(2, 2, 2, 2).mean((0, 2)))


def test_head_attends_over_layers():
    torch.manual_seed(0)
    head = DistillationHead(llm_width=12, width=8, num_layers=3, heads=2)
    states = torch.randn(5, 3, 12)
    out = head(states)
    # reference: per-layer projection, query = layer 0, softmax over the two other layers
    proj = torch.stack([m(states[:, i]) for i, m in enumerate(head.norm_layer)], 1)
    q, kv = proj[:, 0].view(5, 2, 4), proj[:, 1:].view(5, 2, 2, 4)
    att = (torch.einsum("nhd,nlhd->nhl", q, kv) / 8**0.5).softmax(-1)
    mixed = torch.einsum("nhl,nlhd->nhd", att, kv).reshape(5, 8)
    assert torch.allclose(out, head.output_layer(mixed) + head.input_layer(states[:, 0]))


class _EchoTeacher(nn.Module):
    """Teacher whose patch features are the mean pixel of each 4x4 patch (width 3)."""

    image_size, patch_size, width = 16, 4, 3

    def forward(self, frames):
        return F.avg_pool2d(frames[:, :3], 4).flatten(2).transpose(1, 2)


def test_distillation_loss_matches_a_manual_cosine():
    model = _tiny()
    g = torch.Generator().manual_seed(1)
    clip = torch.randint(0, 255, (4, 3, 24, 32), generator=g, dtype=torch.uint8)
    frames = videopanda_anypixel(clip, image_size=32, teacher_size=16, patch=4, num_frames=4)
    # the teacher view of the same clip: 16 px canvas, a 12 px band = 3x4 patches of 4 px
    teacher_frames = videopanda_anypixel(clip, image_size=16, teacher_size=16, patch=4)[:4]
    ids = torch.tensor([[1, -200, -200, -200, -200, 5]])
    mask = torch.ones_like(ids)
    torch.manual_seed(0)
    head = DistillationHead(96, 3, 3, heads=1)
    teacher = _EchoTeacher()
    with torch.no_grad():
        tokens, grids = model.encode_videos(frames[None])
        spliced = model.splice(ids, tokens, mask)
        out = model.language_model(
            inputs_embeds=spliced.inputs_embeds, output_hidden_states=True, use_cache=False
        )
        positions = frame_token_positions(ids, mask, grids)
        loss = distillation_loss(
            out.hidden_states, [2, 1, 0], head, teacher, teacher_frames, positions, grids
        )
        manual = []
        for _, f, pos in positions:
            states = torch.stack([out.hidden_states[i][0, pos] for i in (2, 1, 0)], 1)
            # rows 0..2 of the 4x4 teacher grid hold the band (pre = (4 - 3) // 2 = 0)
            target = teacher(teacher_frames[f : f + 1])[0].view(4, 4, 3)[0:3].reshape(12, 3)
            cos = F.cosine_similarity(head(states), target, dim=-1)
            manual.append(1 - cos.mean())
    assert grids.tolist() == [[3, 4]] * 4
    assert torch.allclose(loss, torch.stack(manual).mean(), atol=1e-6)
    assert 0.0 < float(loss) < 2.0
    # zero-padded frames (empty teacher mask) are left out of the mean
    teacher_frames[2:] = 0
    with torch.no_grad():
        partial = distillation_loss(
            out.hidden_states, [2, 1, 0], head, teacher, teacher_frames, positions, grids
        )
    assert torch.allclose(partial, torch.stack(manual[:2]).mean(), atol=1e-6)


def test_allinone_teacher_is_frozen_and_sized():
    teacher = build_teacher(TeacherConfig(), image_size=16, patch_size=4)
    assert (teacher.image_size, teacher.patch_size, teacher.width) == (16, 4, 64)
    assert not any(p.requires_grad for p in teacher.parameters())
    x = torch.randn(3, 4, 16, 16)
    teacher.train()
    assert not teacher.training
    out = teacher(x)
    assert out.shape == (3, 16, 64)
    assert torch.equal(out, teacher(x))  # eval mode: deterministic


def test_training_module_stays_out_of_checkpoints(tmp_path):
    model = _tiny()
    head = DistillationHead(96, 8, 3, heads=2)
    attach_training_module(model, "distill_head", head)
    names = [n for n, _ in model.named_parameters()]
    assert any(n.startswith("distill_head.") for n in names)
    assert not any(k.startswith("distill_head.") for k in model.state_dict())
    model.load_state_dict(model.state_dict(), strict=True)  # the head is not expected
    save_model(model, tmp_path / "m")
    again = load(tmp_path / "m")
    assert not hasattr(again, "distill_head")
    assert torch.equal(again.projector[0].weight, model.projector[0].weight)
