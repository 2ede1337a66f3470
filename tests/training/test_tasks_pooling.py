"""The default-off pooling options of All-in-one used by the demo recipe (``fusion_pool``,
``vtc_pool``): exact values against a hand computation, and the official default unchanged."""

import pytest
import torch

from leanvl.models.allinone import allinone_tiny


def _inputs():
    g = torch.Generator().manual_seed(0)
    video = torch.randn(2, 3, 3, 64, 64, generator=g)
    ids = torch.randint(1000, 2000, (2, 7), generator=g)
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, 4:] = 0
    return video, ids, mask


def _pair(**options):
    torch.manual_seed(0)
    base = allinone_tiny(drop_rate=0.0, drop_path_rate=0.0).eval()
    torch.manual_seed(0)
    other = allinone_tiny(drop_rate=0.0, drop_path_rate=0.0, **options).eval()
    other.load_state_dict(base.state_dict())  # same weights, same parameter names
    return base, other


def test_fusion_pool_adds_the_mean_visual_token_to_the_text_cls():
    base, fused = _pair(fusion_pool="text_cls+video")
    video, ids, mask = _inputs()
    with torch.no_grad():
        a, b = base(video, ids, mask), fused(video, ids, mask)
    # The token features are the same; only what the pooler reads changes.
    torch.testing.assert_close(a.video_feats, b.video_feats)
    expected = a.text_feats[:, 0] + a.video_feats.mean(dim=1)
    torch.testing.assert_close(b.raw_cls_feats, expected)
    torch.testing.assert_close(b.cls_feats, torch.tanh(base.pooler.dense(expected)))
    # The official default reads the text [CLS] alone.
    torch.testing.assert_close(a.raw_cls_feats, a.text_feats[:, 0])


def test_vtc_mean_pool_averages_valid_tokens_only():
    base, mean = _pair(vtc_pool="mean")
    video, ids, mask = _inputs()
    with torch.no_grad():
        tokens = base.encode_text(ids, mask, project=False, all_tokens=True)
        vtokens = base.encode_video(video, project=False, all_tokens=True)
        t = mean.encode_text(ids, mask, project=False)
        v = mean.encode_video(video, project=False)
    torch.testing.assert_close(t[0], tokens[0].mean(0))
    torch.testing.assert_close(t[1], tokens[1, :4].mean(0))  # padding left out
    torch.testing.assert_close(v, vtokens.mean(1))
    with torch.no_grad():
        cls = base.encode_text(ids, mask, project=False)
    torch.testing.assert_close(cls, tokens[:, 0])


@pytest.mark.parametrize(("field", "value"), [("fusion_pool", "max"), ("vtc_pool", "sum")])
def test_bad_pooling_names_the_field(field, value):
    with pytest.raises(ValueError, match=f"AllInOneConfig.{field}='{value}'"):
        allinone_tiny(**{field: value})
