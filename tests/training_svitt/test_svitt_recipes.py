"""SViTT / SViTT-Ego through the real training engine (family hook ``training.families.svitt``).

At 32 px with patch 8 and attention blocks of 16 tokens a 4-frame clip has 4 blocks, so
"local 1 + random 3" covers every block whatever the draw: the sparse model is deterministic in
evaluation and its scores can be recomputed independently here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import leanvl
from conftest import MODEL, ego_recipe, ret_recipe
from leanvl.data.annotations import read_egoclip_csv
from leanvl.data.datasets import egoclip_window
from leanvl.data.records import EgoClipRecord
from leanvl.layers.rel_pos_3d import resample_temporal_table
from leanvl.metrics import retrieval_metrics
from leanvl.registry import create_model
from leanvl.text.tokenizer import load_tokenizer, pre_text
from leanvl.training.config import load_train_config
from leanvl.training.families import hooks_for
from leanvl.training.families.svitt import SceneStepSampler, SViTTDataModule, SViTTTask
from leanvl.training.families.svitt_stages import run_stages
from leanvl.training.runner import evaluate, train
from leanvl.video.decode import read_frames


def _frames(path: Path, n: int, sample: str, size: int, start=None, end=None) -> torch.Tensor:
    """Independent decode: ``read_frames`` + centre crop + [-1, 1], as (T, 3, S, S)."""
    kw = {} if start is None else {"start": start, "end": end}
    frames, _ = read_frames(path, n, sample=sample, size=size, **kw)
    h, w = frames.shape[1:3]
    top, left = (h - size) // 2, (w - size) // 2
    frames = frames[:, top : top + size, left : left + size]
    return frames.permute(0, 3, 1, 2).float() / 127.5 - 1.0


def _ids(texts: list[str], length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """SViTT ids, built independently: [CLS] + word pieces (no [SEP]), padded with 0."""
    tok = load_tokenizer()
    rows = [[tok.cls_token_id, *tok(pre_text(t), add_special_tokens=False)["input_ids"]][:length]
            for t in texts]  # fmt: skip
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, : len(r)], mask[i, : len(r)] = torch.tensor(r), 1
    return ids, mask


def test_hook_handles_every_svitt_preset_and_nothing_else():
    from leanvl.training.families import svitt

    for name in ("svitt_base", "svitt_tiny", "svitt_ego", "svitt_ego_tiny"):
        assert hooks_for(name) is svitt
    assert hooks_for("allinone_tiny") is None


def test_egonce_scene_run_then_egomcq_eval_matches_independent_scoring(synth_ego, tmp_path):
    run = tmp_path / "ego"
    recipe = ego_recipe(synth_ego, run, eval={"at_end": False})
    result = train(load_train_config(recipe))
    assert result["steps"] == 3
    assert all(math.isfinite(loss) for _, loss in result["losses"])
    header = (run / "logs" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/itc", "train/itm", "train/mlm"} <= set(header)

    # 6 intra + 6 inter questions, their `types` swapped: the split must come from the data.
    questions = json.loads((synth_ego / "annotations" / "egomcq.json").read_text())
    intra_keys = [k for k, q in questions.items() if q["types"] == 2][:6]
    inter_keys = [k for k, q in questions.items() if q["types"] == 1][:6]
    picked = [questions[k] for k in intra_keys + inter_keys]
    swapped = {str(i): {**q, "types": 3 - q["types"]} for i, q in enumerate(picked)}
    (tmp_path / "swapped.json").write_text(json.dumps(swapped))
    cfg = load_train_config(
        recipe,
        overrides=["task.name=egomcq", f"data.test_file={tmp_path / 'swapped.json'}",
                   f"eval.out={tmp_path / 'm.json'}", "data.cache=false"],
    )  # fmt: skip
    metrics = evaluate(cfg)
    assert json.loads((tmp_path / "m.json").read_text())["metrics"] == metrics

    # Independent EgoMCQ: decode every candidate window, score with the exported model.
    model = leanvl.load(run / "model")
    correct = {True: [], False: []}
    with torch.no_grad():
        for q in picked:
            choices = [q["choices"][str(c)] for c in range(5)]
            clips = []
            for c in choices:
                rec = EgoClipRecord(
                    video_uid=c["video_uid"],
                    clip_start=float(c["clip_start"]),
                    clip_end=float(c["clip_end"]),
                    clip_text=c["clip_text"],
                )
                rel, start, end = egoclip_window(rec)
                clips.append(_frames(synth_ego / "videos_ego" / rel, 4, "uniform", 32, start, end))
            pooled = model.encode_video(torch.stack(clips)).pooled
            ids, mask = _ids([q["query"]["clip_text"]], 16)
            v, t = model.itc_features(pooled, model.encode_text(ids, mask).cls)
            intra = all(c["video_uid"] == q["query"]["video_uid"] for c in choices)
            correct[intra].append(int((v @ t[0]).argmax()) == q["answer"])
    assert metrics["n_intra"] == len(correct[True]) == 6
    assert metrics["n_inter"] == len(correct[False]) == 6
    assert metrics["intra"] == pytest.approx(sum(correct[True]) / 6)
    assert metrics["inter"] == pytest.approx(sum(correct[False]) / 6)
    assert metrics["n"] == 12


def test_scene_batches_pair_each_clip_with_one_of_its_video_and_resume_exactly(synth_ego):
    cfg = load_train_config(ego_recipe(synth_ego, Path("unused"), trainer={"max_steps": 6}))
    dm = SViTTDataModule(cfg)
    records = read_egoclip_csv(synth_ego / "annotations" / "egoclip.csv")
    batches = [b["index"].tolist() for b in dm.train_dataloader()]
    assert len(batches) == 6
    for batch in batches:
        anchors, partners = batch[:4], batch[4:]
        assert len(set(batch)) == 8
        # 6 videos of 5 clips: a partner always exists in the anchor's video
        assert [records[a].video_uid for a in anchors] == [records[p].video_uid for p in partners]
    # 30 clips, 4 anchors per batch: epoch 0 holds 7 batches; every anchor once per epoch
    epoch0 = [a for b in batches for a in b[:4]]
    assert len(set(epoch0)) == len(epoch0) == 24
    sampler = SceneStepSampler(dm._group_ids, 8, 6, cfg.trainer.seed, start_batch=4)
    resumed = [[i for i, _ in b] for b in sampler]
    assert resumed == batches[4:]


def test_egonce_term_is_egovlp_egonce_on_the_itc_similarity(synth_ego, tmp_path):
    cfg = load_train_config(
        ego_recipe(
            synth_ego,
            tmp_path,
            task={"itm_weight": 0.0, "mlm_weight": 0.0},
            trainer={"max_steps": 8},
        )
    )
    dm = SViTTDataModule(cfg)
    records = read_egoclip_csv(synth_ego / "annotations" / "egoclip.csv")

    def positives(batch) -> torch.Tensor:
        rec = [records[i] for i in batch["index"].tolist()]
        verb = torch.tensor([[bool(set(a.tag_verb) & set(b.tag_verb)) for b in rec] for a in rec])
        noun = torch.tensor([[bool(set(a.tag_noun) & set(b.tag_noun)) for b in rec] for a in rec])
        pos = verb & noun
        return pos | torch.eye(len(rec), dtype=torch.bool)

    # a batch with action-aware positives beyond the diagonal
    batch = next(b for b in dm.train_dataloader() if positives(b).sum() > len(b["index"]))
    pos = positives(batch)
    torch.manual_seed(0)
    model = create_model("svitt_ego_tiny", image_size=32, num_frames=4, **MODEL).eval()
    task = SViTTTask(cfg.task, dm.tokenizer, 16)
    loss = task.losses(model, batch)["itc"]

    video = batch["video"].permute(0, 1, 4, 2, 3).float() / 127.5 - 1.0
    pooled = model.encode_video(video).pooled
    v, t = model.itc_features(pooled, model.encode_text(batch["text_ids"], batch["text_mask"]).cls)
    x = t @ v.t() / model.temp  # texts x videos
    t2v = -(x.softmax(1) * pos).sum(1).log().mean()
    v2t = -(x.t().softmax(1) * pos.t()).sum(1).log().mean()
    assert float(loss.detach()) == pytest.approx(float((t2v + v2t).detach()), rel=1e-5)

    plain = {"contrastive_loss": "infonce", "itm_weight": 0.0, "mlm_weight": 0.0}
    info_cfg = load_train_config(ego_recipe(synth_ego, tmp_path, task=plain))
    info = SViTTTask(info_cfg.task, dm.tokenizer, 16)
    diag = torch.arange(len(pos))
    expected = ((F.cross_entropy(x.t(), diag) + F.cross_entropy(x, diag)) / 2).detach()
    assert float(info.losses(model, batch)["itc"].detach()) == pytest.approx(
        float(expected), rel=1e-5
    )


def test_svitt_retrieval_run_reports_the_allinone_keys_and_recomputable_values(synth_ego, tmp_path):
    run = tmp_path / "ret"
    result = train(load_train_config(ret_recipe(synth_ego, run, data={"cache": False})))
    m = result["metrics"]
    keys = set(retrieval_metrics(torch.eye(2), [0, 1]))
    assert set(m) == keys | {"n_videos", "n_texts", "itm_rerank"}
    assert set(m["itm_rerank"]) == keys | {"k"} and m["itm_rerank"]["k"] == 3
    records = json.loads((synth_ego / "annotations" / "ret_test.json").read_text())
    assert m["n_videos"] == len(records) == 6

    model = leanvl.load(run / "model")
    texts, t2v = [], []
    for i, r in enumerate(records):
        caps = r["caption"] if isinstance(r["caption"], list) else [r["caption"]]
        texts += caps
        t2v += [i] * len(caps)
    with torch.no_grad():
        video = torch.stack([_frames(synth_ego / "videos" / r["video"], 4, "middle", 32)
                             for r in records])  # fmt: skip
        v = F.normalize(model.vision_proj(model.encode_video(video).pooled), dim=-1)
        ids, mask = _ids(texts, 16)
        t = F.normalize(model.text_proj(model.encode_text(ids, mask).cls), dim=-1)
    expected = retrieval_metrics(t @ v.t(), t2v)
    for key, value in expected.items():
        assert m[key] == pytest.approx(value, abs=1e-6), key


def test_model_init_with_more_frames_resamples_the_position_bias(synth_ego, tmp_path):
    src = create_model("svitt_tiny", image_size=32, num_frames=4, **MODEL)
    leanvl.save_model(src, tmp_path / "f4")
    from leanvl.training.families.svitt import build_model

    cfg = load_train_config(ret_recipe(synth_ego, tmp_path, data={"num_frames": 8},
                                       model={"init": str(tmp_path / "f4")}))  # fmt: skip
    dst = build_model(cfg)
    assert dst.config.num_frames == 8
    old = src.state_dict()
    new = dst.state_dict()
    for key in old:
        if key.endswith("rel_pos.table"):
            assert new[key].shape[0] == 15 * 49 + 3
            assert torch.equal(new[key], resample_temporal_table(old[key], 4, 8, 4, 4))
            grid_old, grid_new = old[key][:-3].view(7, 49, -1), new[key][:-3].view(15, 49, -1)
            # offsets -7..7 <- -3,-3,-3,-2,-2,-1,-1,0,0,1,1,2,2,3,3 (nearest, official)
            assert torch.equal(grid_new[7], grid_old[3]) and torch.equal(grid_new[14], grid_old[6])
            assert torch.equal(grid_new[0], grid_old[0]) and torch.equal(grid_new[8], grid_old[3])
            assert torch.equal(new[key][-3:], old[key][-3:])
        else:
            assert torch.equal(new[key], old[key]), key


def test_two_stage_expansion_runs_end_to_end_and_reuses_finished_stages(synth_ego, tmp_path):
    recipe = ret_recipe(synth_ego, tmp_path / "exp", trainer={"max_steps": 2},
                        eval={"at_end": True, "rerank_k": 0})  # fmt: skip
    recipe["stages"] = [
        {"name": "f4", "data": {"num_frames": 4}, "model": {"overrides": {"token_keep_rate": 0.7}}},
        {"name": "f8", "data": {"num_frames": 8}, "model": {"overrides": {"token_keep_rate": 0.6}}},
    ]
    import yaml

    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(recipe))
    out = run_stages(path)["stages"]
    assert [(s["name"], s["num_frames"], s["token_keep_rate"]) for s in out] == [
        ("f4", 4, 0.7), ("f8", 8, 0.6)
    ]  # fmt: skip
    assert out[0]["init"] is None and out[1]["init"] == str(tmp_path / "exp" / "f4" / "model")
    f8 = leanvl.load(tmp_path / "exp" / "f8" / "model")
    assert f8.config.num_frames == 8 and f8.config.token_keep_rate == 0.6
    summary = json.loads((tmp_path / "exp" / "stages.json").read_text())
    written = [s["metrics"]["r_mean"] for s in summary["stages"]]
    assert written == [s["metrics"]["r_mean"] for s in out]
    again = run_stages(path)["stages"]
    assert [s["reused"] for s in again] == [True, True]
    assert [s["metrics"] for s in again] == [s["metrics"] for s in out]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"task": {"contrastive_loss": "egonce"}}, "data.train_file"),
        ({"task": {"name": "qa"}}, "task.name='qa'"),
    ],
)
def test_bad_recipes_fail_naming_the_field(synth_ego, tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        SViTTDataModule(load_train_config(ret_recipe(synth_ego, tmp_path, **change)))


def test_scene_sampler_needs_an_even_batch(synth_ego, tmp_path):
    cfg = load_train_config(ego_recipe(synth_ego, tmp_path, data={"batch_size": 7}))
    with pytest.raises(ValueError, match="data.batch_size=7"):
        SViTTDataModule(cfg).train_dataloader()
