"""Video-Panda parity against the official outputs (every fixture naming jh-yi/Video-Panda).

Per fixture: the official weights are written as an official-format sharded checkpoint
(``config.json`` + ``model-0000k-of-0000n.safetensors`` + index + the STAB preprocessor config
folder that ``mm_video_tower`` names), converted with ``leanvl convert videopanda``, loaded with
``leanvl.load`` and run; every tensor the manifest lists is compared (floats at atol = rtol =
1e-4, ints / bools exactly). Sizes come from the manifest and the tensors, never from literals.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

import leanvl
from leanvl.cli import app
from tests.parity.golden import load_manifest, parametrize_fixtures

ATOL = RTOL = 1e-4
BACKENDS = ("sdpa", "eager")


def write_official_checkpoint(golden: Path, folder: Path, shards: int = 2) -> dict:
    """Write the fixture's weights as the official ``save_pretrained`` folder would hold them."""
    manifest = load_manifest(golden)
    cfg = manifest["config"]
    weights = load_file(str(golden / "weights.safetensors"))
    folder.mkdir(parents=True)
    tower = "videopanda-video-LB-anypixel"  # relative, as in the released config
    (folder / tower).mkdir()
    (folder / tower / "preprocessor_config.json").write_text(
        json.dumps(cfg["preprocessor_config"]), encoding="utf-8"
    )
    official = dict(cfg["llm"])
    official.update(cfg["model_config_multimodal_fields"])
    official.update(
        architectures=["VideoPandaLlamaForCausalLM"],
        mm_video_tower=tower,
        mm_vision_tower=tower,
        torch_dtype="float32",
    )
    (folder / "config.json").write_text(json.dumps(official, indent=1), encoding="utf-8")
    keys = sorted(weights)
    weight_map = {}
    for k in range(shards):
        name = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        part = keys[k::shards]
        save_file({key: weights[key].contiguous() for key in part}, str(folder / name))
        weight_map.update(dict.fromkeys(part, name))
    index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index), encoding="utf-8")
    return manifest


def _gen_video_index(manifest: dict) -> int:
    """Which video the generation prompt uses ("... for video B ..."); default the last one."""
    names = [v["name"] for v in manifest["videos"]]
    found = re.search(r"for video (\w+)", manifest["tensors"]["gen.output_ids"]["meaning"])
    return names.index(found.group(1)) if found and found.group(1) in names else len(names) - 1


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request):
    return request.param


_CACHE: dict[tuple[str, str], tuple[dict, dict, dict]] = {}  # per process, like a module fixture


def run_fixture(golden: Path, backend: str, tmp: Path) -> tuple[dict, dict, dict]:
    """Convert + run once per (fixture, backend); returns (manifest, reference, ours)."""
    key = (str(golden), backend)
    if key in _CACHE:
        return _CACHE[key]
    manifest = write_official_checkpoint(golden, tmp / "official")
    cfg = manifest["config"]
    args = ["convert", "videopanda", str(tmp / "official"), str(tmp / "leanvl"),
            "--attn-implementation", backend]  # fmt: skip
    options = {"gstra_heads": "--gstra-heads", "lsd_heads": "--lsd-heads",
               "fsra_heads": "--fsra-heads", "NUM_FRAMES": "--num-frames"}  # fmt: skip
    for key, option in options.items():
        if key in cfg:
            args += [option, str(cfg[key])]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    ref = load_file(str(golden / "io.safetensors"))
    model = leanvl.load(tmp / "leanvl")
    ours: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        stab = model.stab(ref["input.frames"])
        ours["stab.lste_out"] = stab.lste
        ours["stab.tokens"] = torch.cat(stab.tokens)
        ours["stab.patch_hw"] = stab.grids
        ours["stab.tokens_per_frame"] = torch.tensor([len(t) for t in stab.tokens])
        ours["stab.projected"] = model.projector(ours["stab.tokens"])
        out = model(
            ref["input.input_ids"],
            ref["input.frames"],
            ref["input.attention_mask"],
            ref["input.labels"],
        )
        ours["splice.inputs_embeds"] = out.spliced.inputs_embeds
        ours["splice.labels"] = out.spliced.labels
        ours["splice.attention_mask"] = out.spliced.attention_mask
        ours["llm.logits"] = out.logits
        ours["llm.loss"] = out.loss.reshape(1)
        video = _gen_video_index(manifest)
        gen = model.generate(
            ref["input.gen_prompt_ids"],
            ref["input.frames"][video : video + 1],
            max_new_tokens=ref["gen.output_ids"].shape[1],
        )
        ours["gen.output_ids"] = gen.sequences
        ours["gen.step_logits"] = gen.scores
    ours["folder"] = tmp / "leanvl"  # type: ignore[assignment]
    _CACHE[key] = (manifest, ref, ours)
    return _CACHE[key]


def _compare(name: str, ours: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor | None) -> None:
    assert ours.shape == ref.shape, f"{name}: shape {tuple(ours.shape)} vs {tuple(ref.shape)}"
    if mask is not None:
        ours, ref = ours[mask], ref[mask]
    if ref.is_floating_point():
        diff = (ours.float() - ref).abs().max().item() if ref.numel() else 0.0
        assert torch.allclose(ours.float(), ref, atol=ATOL, rtol=RTOL), f"{name}: max |diff| {diff}"
    else:
        assert torch.equal(ours.to(ref.dtype), ref), f"{name}: integer/bool tensors differ"


@parametrize_fixtures("Video-Panda")
def test_every_manifest_tensor_matches(golden, backend, tmp_path_factory):
    manifest, ref, ours = run_fixture(golden, backend, tmp_path_factory.mktemp("vp"))
    checked = []
    for name in manifest["tensors"]:
        if name.startswith("input.") or name == "folder":
            continue  # harness inputs; input.frames is the preprocessing test's business
        assert name in ours, f"manifest tensor {name} has no leanvl counterpart"
        mask = ref["splice.attention_mask"] if name == "llm.logits" else None
        _compare(name, ours[name], ref[name], mask)
        checked.append(name)
    assert {"stab.tokens", "llm.logits", "gen.step_logits"} <= set(checked)


@parametrize_fixtures("Video-Panda")
def test_fixture_counts_match_manifest(golden, backend, tmp_path_factory):
    manifest, _, ours = run_fixture(golden, backend, tmp_path_factory.mktemp("vp"))
    expected_counts = [n for video in manifest["videos"] for n in video["tokens_per_frame"]]
    expected_grids = [g for video in manifest["videos"] for g in video["lsd_grid_hw_per_frame"]]
    assert ours["stab.tokens_per_frame"].tolist() == expected_counts
    assert ours["stab.patch_hw"].tolist() == expected_grids


@parametrize_fixtures("Video-Panda")
def test_converted_parameter_counts_match_manifest(golden, tmp_path_factory):
    manifest, _, ours = run_fixture(golden, "sdpa", tmp_path_factory.mktemp("vp"))
    model = leanvl.load(ours["folder"])
    params = manifest["weights"].get("stab_params_here")
    if params is None:
        pytest.skip("manifest lists no STAB parameter counts")
    assert sum(p.numel() for p in model.stab.parameters()) == params["stab_used_in_forward"]
    assert sum(p.numel() for p in model.projector.parameters()) == params["projector"]
    dropped = model.checkpoint_extra["conversion"]["dropped"]
    assert any("lmhra2" in reason for reason in dropped)


@parametrize_fixtures("Video-Panda")
def test_anypixel_preprocessing_reproduces_input_frames(golden):
    """input.raw_frames_<name> -> leanvl.video.transforms.videopanda_anypixel == input.frames."""
    transforms = pytest.importorskip("leanvl.video.transforms")
    manifest = load_manifest(golden)
    pre = manifest["config"]["preprocessor_config"]
    ref = load_file(str(golden / "io.safetensors"))
    for b, video in enumerate(manifest["videos"]):
        raw = ref[f"input.raw_frames_{video['name']}"].permute(0, 3, 1, 2)
        frames = transforms.videopanda_anypixel(
            raw,
            image_size=pre["image_size"],
            teacher_size=pre["image_size_teacher"],
            patch=pre["patch_stride_teacher"],
            num_frames=manifest["config"].get("NUM_FRAMES", 8),
            resample="pil",
        )
        _compare(f"input.frames[{b}]", frames, ref["input.frames"][b], None)


@parametrize_fixtures("Video-Panda")
def test_full_size_parameter_counts_match_the_official_measurement(golden):
    """videopanda_7b (built on the meta device, LLM not loaded) vs the manifest's counts."""
    reference = load_manifest(golden).get("full_size_reference", {}).get("params")
    if not reference:
        pytest.skip("manifest has no full-size parameter counts")
    with torch.device("meta"):
        model = leanvl.create_model("videopanda_7b")
    stab = sum(p.numel() for p in model.stab.parameters())
    projector = sum(p.numel() for p in model.projector.parameters())
    assert stab == reference["stab_used_in_forward"]
    assert projector == reference["projector_mlp2x_gelu"]
    assert stab + projector == reference["stab_used_plus_projector"]
