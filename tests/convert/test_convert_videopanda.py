"""``leanvl convert videopanda``: key mapping, fallbacks, dropped keys, strictness, dtype.

The official-format checkpoints here are written from a random tiny leanvl model by inverting
the key mapping of the spec (§8.2/§8.4), so every test also checks that the mapping is a
bijection on the weights inference uses. Parity with the real official outputs is in
``tests/parity/test_videopanda_parity.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from typer.testing import CliRunner

import leanvl
from leanvl.cli import app
from leanvl.convert.videopanda import _STAB_RENAMES, ConversionError, convert_videopanda

TOWER = "videopanda-video-LB-patch4-anypixel-72"


def official_state_dict(model) -> dict[str, torch.Tensor]:
    """The keys/tensors ``VideoPandaLlamaForCausalLM.state_dict()`` would hold for ``model``."""
    sd = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    tower = "model.video_tower."
    for kind in ("weight", "bias"):
        out[f"{tower}dec.attn.in_proj_{kind}"] = torch.cat(
            [sd.pop(f"stab.gstra.{n}.{kind}") for n in "qkv"]
        )
    for ours, theirs in (("lsd", "local_attention"), ("fsra", "global_attention")):
        out[f"{tower}{theirs}.kv.1.weight"] = torch.cat(
            [sd.pop(f"stab.{ours}.k.weight"), sd.pop(f"stab.{ours}.v.weight")]
        )
    inverse = sorted(((v, k) for k, v in _STAB_RENAMES.items()), key=lambda kv: -len(kv[0]))
    for key, value in sd.items():
        if key.startswith("stab."):
            rest = key[len("stab.") :]
            dst, src = next((d, s) for d, s in inverse if rest == d or rest.startswith(d))
            out[tower + src + rest[len(dst) :]] = value
        elif key.startswith("projector."):
            out["model.video_projector." + key[len("projector.") :]] = value
        else:
            out[key[len("llm.") :]] = value
    return out


def write_official(folder: Path, tensors: dict[str, torch.Tensor], model, tower=True) -> Path:
    """An HF ``save_pretrained``-style folder: config.json, 2 shards + index, STAB config."""
    folder.mkdir(parents=True)
    cfg = model.config
    official = {
        "model_type": "videopanda",
        "architectures": ["VideoPandaLlamaForCausalLM"],
        **{k: v for k, v in vars(cfg.llm).items()},
        "video_hidden_size": cfg.width,
        "mm_hidden_size": cfg.width,
        "mm_projector_type": cfg.projector,
        "mm_video_tower": TOWER,
        "mm_vision_tower": TOWER,
        "rope_scaling": None,
    }
    (folder / "config.json").write_text(json.dumps(official), encoding="utf-8")
    if tower:
        (folder / TOWER).mkdir()
        geometry = {"image_size": cfg.image_size, "patch_stride": cfg.patch_size,
                    "conv_stride": cfg.lsd_stride, "num_frames": cfg.chunk_length}  # fmt: skip
        (folder / TOWER / "preprocessor_config.json").write_text(json.dumps(geometry))
    keys = sorted(tensors)
    weight_map = {}
    for k, part in enumerate((keys[::2], keys[1::2])):
        name = f"model-{k + 1:05d}-of-00002.safetensors"
        save_file({key: tensors[key].contiguous() for key in part}, str(folder / name))
        weight_map.update(dict.fromkeys(part, name))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return folder


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = leanvl.create_model("videopanda_tiny").eval()
    with torch.no_grad():  # non-default values everywhere (zero-init paths included)
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
        model.stab.lste.norm.running_var.uniform_(0.5, 1.5)
    return model


def _with_extras(model) -> dict[str, torch.Tensor]:
    """Official keys plus what real checkpoints also hold: aliases, lmhra2, RoPE buffers,
    the distillation compressor and teacher."""
    tensors = official_state_dict(model)
    for key in list(tensors):
        if key.startswith("model.video_tower.lmhra1."):
            tensors[key.replace("lmhra1", "lmhra2")] = tensors[key].clone()
    for key in list(tensors):
        for ours, alias in (("video_tower", "vision_tower"), ("video_projector", "mm_projector")):
            if key.startswith(f"model.{ours}."):
                tensors[key.replace(ours, alias)] = tensors[key].clone()
    tensors["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.rand(12)
    tensors["model.video_tower_compressor.input_layer.weight"] = torch.rand(4, 4)
    tensors["model.video_teacher.video_tower.embeddings.weight"] = torch.rand(4)
    return tensors


def _run(args: list[str]):
    return CliRunner().invoke(app, ["convert", "videopanda", *map(str, args), "--gstra-heads", "8"])


def _logits(model, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    cfg = model.config
    frames = torch.randn(1, cfg.num_frames, 4, cfg.image_size, cfg.image_size, generator=gen)
    frames[:, :, 3] = 1
    ids = torch.tensor([[1, 7, *[cfg.image_token_index] * cfg.num_frames, 9, 10]])
    with torch.no_grad():
        return model(ids, frames).logits


def test_roundtrip_reproduces_the_model_and_reports_drops(tiny, tmp_path):
    src = write_official(tmp_path / "official", _with_extras(tiny), tiny)
    result = _run([src, tmp_path / "out"])
    assert result.exit_code == 0, result.output
    assert "lmhra2" in result.output and "compressor" in result.output
    converted = leanvl.load(tmp_path / "out")
    torch.testing.assert_close(_logits(converted), _logits(tiny), rtol=0, atol=0)
    dropped = converted.checkpoint_extra["conversion"]["dropped"]
    flat = [k for keys in dropped.values() for k in keys]
    assert "model.video_tower_compressor.input_layer.weight" in flat
    assert "model.video_teacher.video_tower.embeddings.weight" in flat
    assert "model.layers.0.self_attn.rotary_emb.inv_freq" in flat
    assert "model.mm_projector.0.weight" in flat and "model.vision_tower.balance" in flat
    assert converted.config.lmhra_channels == tiny.config.lmhra_channels
    assert converted.config.image_size == tiny.config.image_size


def test_vision_tower_and_mm_projector_fallbacks(tiny, tmp_path):
    tensors = {}
    for key, value in official_state_dict(tiny).items():
        key = key.replace("model.video_tower.", "model.vision_tower.")
        tensors[key.replace("model.video_projector.", "model.mm_projector.")] = value
    report = convert_videopanda(
        write_official(tmp_path / "official", tensors, tiny), tmp_path / "out", gstra_heads=8
    )
    assert report.stab_prefix == "model.vision_tower."
    assert report.projector_prefix == "model.mm_projector."
    torch.testing.assert_close(_logits(leanvl.load(tmp_path / "out")), _logits(tiny))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.update({"model.video_tower.new_thing": torch.zeros(1)}), "unknown key"),
        (lambda t: t.pop("model.video_tower.dpe.bias"), "missing.*stab.lste.dpe.bias"),
        (lambda t: t.pop("model.layers.1.mlp.up_proj.weight"), "missing.*up_proj"),
        (
            lambda t: t.update({"model.norm.weight": torch.zeros(3)}),
            r"llm.model.norm.weight has shape \(3,\), expected \(96,\)",
        ),
        (
            lambda t: t.update({"model.mm_projector.0.bias": torch.zeros(96)}),
            "aliases of one module.*different values",
        ),
    ],
)
def test_bad_checkpoints_fail_with_the_key_named(tiny, tmp_path, edit, message):
    tensors = _with_extras(tiny)
    edit(tensors)
    src = write_official(tmp_path / "official", tensors, tiny)
    with pytest.raises(ConversionError, match=message):
        convert_videopanda(src, tmp_path / "out", gstra_heads=8)
    result = _run([src, tmp_path / "out"])
    assert result.exit_code == 1 and "error:" in result.output
    assert not (tmp_path / "out").exists()


def test_dtype_choice_is_applied(tiny, tmp_path):
    src = write_official(tmp_path / "official", official_state_dict(tiny), tiny)
    report = convert_videopanda(src, tmp_path / "out", dtype="bfloat16", gstra_heads=8)
    assert report.dtype == "bfloat16"
    with safe_open(str(tmp_path / "out" / "model.safetensors"), "pt") as f:
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
    assert dtypes == {"BF16", "I64"}  # I64: BatchNorm num_batches_tracked


def test_geometry_falls_back_to_the_release_and_checks_it(tiny, tmp_path):
    src = write_official(tmp_path / "official", official_state_dict(tiny), tiny, tower=False)
    with pytest.raises(
        ConversionError, match="patch_stride=14 but the patch embedding kernel is 4"
    ):
        convert_videopanda(src, tmp_path / "out", gstra_heads=8)
    src = write_official(tmp_path / "with_tower", official_state_dict(tiny), tiny)
    with pytest.raises(ConversionError, match="STAB width 64 is not one of the official widths"):
        convert_videopanda(src, tmp_path / "out")


def test_bin_shards_are_read_without_unpickling_code(tiny, tmp_path):
    src = write_official(tmp_path / "official", official_state_dict(tiny), tiny)
    index = json.loads((src / "model.safetensors.index.json").read_text())
    bin_map = {}
    for shard in sorted(set(index["weight_map"].values())):
        from safetensors.torch import load_file

        part = load_file(str(src / shard))
        name = shard.replace("model-", "pytorch_model-").replace(".safetensors", ".bin")
        torch.save(part, src / name)
        bin_map.update(dict.fromkeys(part, name))
        (src / shard).unlink()
    (src / "model.safetensors.index.json").unlink()
    (src / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": bin_map}))
    convert_videopanda(src, tmp_path / "out", gstra_heads=8)
    torch.testing.assert_close(_logits(leanvl.load(tmp_path / "out")), _logits(tiny))
