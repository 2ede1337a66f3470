"""All-in-one parity with the official code, through the official checkpoint format.

For every golden fixture of showlab/all-in-one (``../shared/golden/*`` and ``LEANVL_EXTRA_GOLDEN``):
write its weights as an official PyTorch-Lightning 1.1.4 checkpoint, convert it with
``leanvl convert allinone``, open the result with ``leanvl.load`` and compare every output
tensor the manifest lists with atol = rtol = 1e-4. The model configuration comes from the
manifest and the weights only (nothing about a fixture's shapes is written here).
"""

from __future__ import annotations

import contextlib
import re
import sys
import types
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from typer.testing import CliRunner

import leanvl
from leanvl.cli.app import app
from leanvl.models.allinone import AllInOne
from tests.parity.golden import load_manifest, parametrize_fixtures

ATOL = RTOL = 1e-4
INPUTS = {"video", "text_ids", "text_masks", "text_ids_mlm"}


@contextlib.contextmanager
def fake_lightning_modules() -> Iterator[types.SimpleNamespace]:
    """Stand-ins of the classes a real Lightning 1.1.4 / sacred checkpoint pickles by reference,
    importable (so ``torch.save`` can write them) only inside the ``with`` block."""
    names = {
        "pytorch_lightning": None,
        "pytorch_lightning.utilities": None,
        "pytorch_lightning.utilities.parsing": "AttributeDict",
        "pytorch_lightning.callbacks": None,
        "pytorch_lightning.callbacks.model_checkpoint": "ModelCheckpoint",
        "sacred": None,
        "sacred.config": None,
        "sacred.config.custom_containers": "ReadOnlyDict",
    }
    classes = {}
    saved = {name: sys.modules.get(name) for name in names}
    try:
        for module_name, class_name in names.items():
            module = types.ModuleType(module_name)
            if class_name is not None:
                base = object if class_name == "ModelCheckpoint" else dict
                cls = type(class_name, (base,), {"__module__": module_name})
                setattr(module, class_name, cls)
                classes[class_name] = cls
            sys.modules[module_name] = module
        yield types.SimpleNamespace(**classes)
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def write_official_checkpoint(
    path: Path, state: dict[str, torch.Tensor], config: dict, flavour: str = "lightning"
) -> Path:
    """Write ``state`` the way the official training saves it.

    ``flavour="lightning"``: the full Lightning 1.1.4 layout, with ``hyper_parameters`` an
    ``AttributeDict``, the config a sacred ``ReadOnlyDict`` and ``callbacks`` keyed by a callback
    class (all pickled by reference to modules that do not exist when the file is read).
    ``flavour="plain"``: the same dict with plain containers only.
    """
    ckpt = {
        "epoch": 9,
        "global_step": 1000,
        "pytorch-lightning_version": "1.1.4",
        "optimizer_states": [],
        "lr_schedulers": [],
        "state_dict": dict(state),
    }
    if flavour == "plain":
        torch.save({**ckpt, "hyper_parameters": {"config": dict(config)}}, path)
        return path
    with fake_lightning_modules() as fake:
        ckpt["callbacks"] = {fake.ModelCheckpoint: {"best_model_score": torch.tensor(0.5)}}
        ckpt["native_amp_scaling_state"] = {"scale": 65536.0, "_growth_tracker": 3}
        ckpt["hyper_parameters"] = fake.AttributeDict(config=fake.ReadOnlyDict(config))
        torch.save(ckpt, path)
    return path


def convert_with_cli(ckpt: Path, out: Path, *args: str) -> AllInOne:
    """Run ``leanvl convert allinone`` and open its output."""
    result = CliRunner().invoke(app, ["convert", "allinone", str(ckpt), str(out), *args])
    assert result.exit_code == 0, result.output
    return leanvl.load(out)


def shuffle_seed(manifest: dict) -> int | None:
    """The ``torch.manual_seed`` the official run used for the ``shuffled.*`` realisation."""
    found = re.search(r"shuffled.{0,200}?manual_seed\((\d+)\)", manifest["how_produced"], re.S)
    return int(found.group(1)) if found else None


@torch.no_grad()
def official_outputs(model: AllInOne, io: dict[str, torch.Tensor], seed: int | None) -> dict:
    """Every tensor the golden fixtures record, computed with the leanvl model."""
    video, ids, mask = io["video"].float(), io["text_ids"], io["text_masks"]
    seen: dict[str, torch.Tensor] = {}
    hook = model.transformer.blocks[0].register_forward_pre_hook(
        lambda _module, args: seen.update(seq=args[0].clone())
    )
    joint = model(video, ids, mask)
    hook.remove()
    out = {
        "text_feats": joint.text_feats,
        "video_feats": joint.video_feats,
        "cls_feats": joint.cls_feats,
        "raw_cls_feats": joint.raw_cls_feats,
        "seq_after_first_roll": seen["seq"],
    }
    cls = joint.cls_feats
    if model.itm_score is not None:
        out["itm_logits"] = model.itm_logits(cls)
        out["rank_score"] = model.rank_scores(cls)
    if model.vqa_classifier is not None:
        out["vqa_logits"] = model.qa_logits(cls)
    if model.mc_vqa_classifier is not None:
        out["mc_vqa_score"] = model.mc_vqa_scores(cls)
    if "text_ids_mlm" in io:
        mlm = model(video, io["text_ids_mlm"], mask)
        out["mlm_text_feats"] = mlm.text_feats
        if model.mlm_score is not None:
            out["mlm_logits"] = model.mlm_logits(mlm.text_feats)
    if model.txt_proj is not None:
        text_emb, video_emb = model.encode_text(ids, mask), model.encode_video(video)
        out["itc_text_emb"], out["itc_video_emb"] = text_emb, video_emb
        out["itc_sim"] = F.normalize(text_emb, dim=-1) @ F.normalize(video_emb, dim=-1).T
    if "shuffled.patch_order" in io:
        # (1) the recorded permutation given explicitly
        shuffled = model(video, ids, mask, patch_order=io["shuffled.patch_order"])
        out["shuffled.text_feats"] = shuffled.text_feats
        out["shuffled.cls_feats"] = shuffled.cls_feats
        if model.itm_score is not None:
            out["shuffled.itm_logits"] = model.itm_logits(shuffled.cls_feats)
        # (2) our official-style random order, seeded like the official run
        if seed is not None:
            random_model = AllInOne(replace(model.config, patch_order="random")).eval()
            random_model.load_state_dict(model.state_dict())
            frames = video.shape[0] * video.shape[1]
            out["shuffled.patch_order"] = random_model.draw_patch_order(
                frames, generator=torch.Generator().manual_seed(seed)
            )
            drawn = random_model(video, ids, mask, generator=torch.Generator().manual_seed(seed))
            out["shuffled(random mode).cls_feats"] = drawn.cls_feats
    return out


@pytest.mark.parametrize("flavour", ["lightning", "plain"])
@parametrize_fixtures("showlab/all-in-one")
def test_allinone_matches_official_outputs(golden: Path, flavour: str, tmp_path: Path):
    manifest = load_manifest(golden)
    weights = load_file(str(golden / "weights.safetensors"))
    io = load_file(str(golden / "io.safetensors"))
    ckpt = write_official_checkpoint(
        tmp_path / "official.ckpt", weights, manifest["config"], flavour
    )
    model = convert_with_cli(ckpt, tmp_path / "leanvl")
    assert model.config.depth == len(
        {k.split(".")[2] for k in weights if k.startswith("transformer.blocks.")}
    )
    ours = official_outputs(model, io, shuffle_seed(manifest))
    if "shuffled(random mode).cls_feats" in ours:
        io = {**io, "shuffled(random mode).cls_feats": io["shuffled.cls_feats"]}
    inputs = INPUTS | {
        t["name"]
        for t in manifest["io_tensors"]
        if str(t.get("produced_by", "")).startswith("input")
    }
    expected = [t["name"] for t in manifest["io_tensors"] if t["name"] not in inputs]
    assert expected, f"{golden}: manifest lists no output tensors"
    missing = [name for name in expected if name not in ours]
    assert not missing, f"{golden.name}: no leanvl equivalent computed for {missing}"
    failures = []
    for name in expected + [n for n in ours if n.startswith("shuffled(")]:
        ref, got = io[name], ours[name]
        if got.shape != ref.shape:
            failures.append(f"{name}: shape {tuple(got.shape)} != {tuple(ref.shape)}")
        elif not ref.is_floating_point():
            if not torch.equal(got, ref):
                failures.append(f"{name}: {int((got != ref).sum())} entries differ")
        elif not torch.allclose(got.to(ref.dtype), ref, atol=ATOL, rtol=RTOL):
            err = (got.to(ref.dtype) - ref).abs().max().item()
            failures.append(f"{name}: max abs error {err:.3g}")
    assert not failures, f"{golden.name}: " + "; ".join(failures)
