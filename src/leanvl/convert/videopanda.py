"""Convert an official Video-Panda checkpoint (HF ``save_pretrained`` folder) to leanvl.

Official code: ``github.com/jh-yi/Video-Panda`` (Yi et al., CVPR 2025). A released folder holds
``config.json`` (Llama fields + ``mm_*`` fields) and sharded ``*.safetensors`` or ``*.bin``
weights with the keys of ``VideoPandaLlamaForCausalLM`` (spec §8.2). The STAB geometry is not
in the checkpoint: the official ``mm_video_tower`` field points to a folder of the *code*
repository holding ``preprocessor_config.json``; it is looked up relative to the checkpoint
folder (or given explicitly), and the released geometry is used when the folder is absent.

Mapping (spec §8.4): ``model.video_tower.*`` (fallback ``model.vision_tower.*``) -> ``stab.*``,
``model.video_projector.*`` (fallback ``model.mm_projector.*``) -> ``projector.*``, the rest of
``model.*`` and ``lm_head.*`` -> ``llm.*``; GSTRA ``in_proj`` and LSD/FSRA ``kv`` are split
into q/k/v. Dropped and reported: RoPE ``inv_freq`` buffers, the unused ``lmhra2``, the
training-only distillation compressor and teacher, and the alias copies. Every other key must
map onto the model, and every model tensor must be filled (strict).
"""

from __future__ import annotations

import collections
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from leanvl.convert.safe_load import read_sharded
from leanvl.models.videopanda import LlamaArchitecture, VideoPanda, VideoPandaConfig

__all__ = [
    "ConversionError",
    "ConversionReport",
    "RELEASED_GEOMETRY",
    "convert_videopanda",
    "map_state_dict",
    "videopanda_config_from_official",
]

# videopanda/config/videopanda-video-LB-patch14-anypixel-448/preprocessor_config.json
RELEASED_GEOMETRY = {"image_size": 448, "patch_stride": 14, "conv_stride": 2, "num_frames": 4}
# The official VideoTokenizer picks the GSTRA heads from the width (anything else raises).
OFFICIAL_GSTRA_HEADS = {1024: 8, 1152: 8, 1408: 11}
DEFAULT_NUM_FRAMES = 8  # NUM_FRAMES environment variable default in the official code

_DROP = (
    (re.compile(r"(^|\.)rotary_emb\.inv_freq$"), "RoPE inv_freq buffer (recomputed)"),
    (re.compile(r"\.lmhra2\."), "lmhra2 (constructed but never used in forward)"),
    (re.compile(r"compressor"), "distillation compressor (training only)"),
    (re.compile(r"teacher"), "distillation teacher (training only)"),
)

# official suffix under the STAB prefix -> leanvl key (prefix-renames end with '.')
_STAB_RENAMES = {
    "patch_embedding.": "patch_embed.",
    "lmhra1.pos_embed.0.": "lste.norm.",
    "lmhra1.pos_embed.1.": "lste.reduce.",
    "lmhra1.pos_embed.2.": "lste.temporal.",
    "lmhra1.pos_embed.3.": "lste.expand.",
    "dpe.": "lste.dpe.",
    "dec.ln_1.": "gstra.norm_q.",
    "dec.ln_2.": "gstra.norm_mlp.",
    "dec.ln_3.": "gstra.norm_kv.",
    "dec.attn.out_proj.": "gstra.out.",
    "dec.mlp.c_fc.": "gstra.mlp.0.",
    "dec.mlp.c_proj.": "gstra.mlp.3.",
    "temporal_cls_token": "gstra.query",
    "proj.0.": "fusion.0.",
    "proj.2.": "fusion.2.",
    "class_embedding": "fsra.query",
    "split_embedding": "split_token",
    "balance": "balance",
}
for _src, _dst in (("local_attention.", "lsd."), ("global_attention.", "fsra.")):
    _STAB_RENAMES.update(
        {
            f"{_src}q.0.": f"{_dst}norm_q.",
            f"{_src}q.1.": f"{_dst}q.",
            f"{_src}kv.0.": f"{_dst}norm_kv.",
            f"{_src}proj.": f"{_dst}proj.",
        }
    )


class ConversionError(ValueError):
    """The official checkpoint cannot be converted; the message names the file and key."""


@dataclass
class ConversionReport:
    """What the converter did, stored in the output's ``config.json`` under ``extra``."""

    source: str
    shards: list[str]
    stab_prefix: str
    projector_prefix: str
    converted: int = 0
    dropped: dict[str, list[str]] = field(default_factory=dict)
    geometry_source: str = ""
    dtype: str = ""
    parameters: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        """Human-readable multi-line summary (printed by the CLI)."""
        lines = [
            f"source: {self.source} ({len(self.shards)} shard(s))",
            f"STAB from {self.stab_prefix}*, projector from {self.projector_prefix}*",
            f"STAB geometry: {self.geometry_source}",
            f"converted {self.converted} tensors, dtype {self.dtype}",
        ]
        for reason, keys in self.dropped.items():
            shown = ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")
            lines.append(f"dropped {len(keys)} ({reason}): {shown}")
        lines += [f"{name}: {count:,} parameters" for name, count in self.parameters.items()]
        return "\n".join(lines)


def read_checkpoint_folder(folder: Path) -> tuple[dict[str, torch.Tensor], list[str]]:
    """All tensors of the HF checkpoint in ``folder`` and its weight file names.

    Reads through :func:`leanvl.convert.safe_load.read_sharded`: safetensors directly, ``.bin``
    pickles only after the allow-list scan and with torch's weights-only unpickler.
    """
    tensors = read_sharded(folder, mmap=True)
    files = sorted(p.name for p in folder.iterdir() if p.suffix in (".safetensors", ".bin"))
    return dict(tensors), files


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConversionError(f"'{path}': file not found") from exc
    except json.JSONDecodeError as exc:
        raise ConversionError(f"'{path}': not valid JSON ({exc})") from exc


def _find_geometry(
    folder: Path, official: dict[str, Any], stab_config: Path | None
) -> tuple[dict[str, Any], str]:
    """The STAB preprocessor config and where it came from."""
    if stab_config is not None:
        path = stab_config / "preprocessor_config.json" if stab_config.is_dir() else stab_config
        return _read_json(path), str(path)
    tower = official.get("mm_video_tower")
    if tower:
        for base in (Path(tower), folder / tower, folder / Path(tower).name):
            path = base / "preprocessor_config.json"
            if path.is_file():
                return _read_json(path), str(path)
    return dict(RELEASED_GEOMETRY), f"released defaults {RELEASED_GEOMETRY} ({tower!r} not found)"


def _llm_architecture(official: dict[str, Any], where: Path) -> LlamaArchitecture:
    if official.get("rope_scaling"):
        raise ConversionError(f"'{where}': rope_scaling={official['rope_scaling']!r} unsupported")
    fields = {k: official[k] for k in asdict(LlamaArchitecture()) if official.get(k) is not None}
    fields.setdefault("num_key_value_heads", official.get("num_attention_heads", 32))
    for key in ("hidden_size", "vocab_size", "num_hidden_layers", "num_attention_heads"):
        if key not in official:
            raise ConversionError(f"'{where}': missing Llama field '{key}'")
    return LlamaArchitecture(**fields)


def videopanda_config_from_official(
    folder: Path,
    tensors: dict[str, torch.Tensor],
    stab_prefix: str,
    *,
    stab_config: Path | None = None,
    gstra_heads: int | None = None,
    lsd_heads: int = 8,
    fsra_heads: int = 8,
    num_frames: int | None = None,
    attn_implementation: str = "sdpa",
) -> tuple[VideoPandaConfig, str]:
    """Build the leanvl config from the official ``config.json``, the STAB preprocessor config
    and the tensor shapes. Returns the config and where the geometry came from."""
    where = folder / "config.json"
    official = _read_json(where)
    geometry, geometry_source = _find_geometry(folder, official, stab_config)
    patch = _tensor(tensors, f"{stab_prefix}patch_embedding.weight", folder)
    width, kernel = patch.shape[0], patch.shape[-1]
    declared = official.get("video_hidden_size", official.get("mm_hidden_size", width))
    if declared != width:
        raise ConversionError(
            f"'{where}': video_hidden_size={declared} but "
            f"{stab_prefix}patch_embedding.weight has width {width}"
        )
    if geometry.get("patch_stride", kernel) != kernel:
        raise ConversionError(
            f"{geometry_source}: patch_stride={geometry['patch_stride']} but the patch "
            f"embedding kernel is {kernel}"
        )
    if gstra_heads is None:
        if width not in OFFICIAL_GSTRA_HEADS:
            raise ConversionError(
                f"'{where}': STAB width {width} is not one of the official widths "
                f"{sorted(OFFICIAL_GSTRA_HEADS)}; pass the GSTRA head count (--gstra-heads)"
            )
        gstra_heads = OFFICIAL_GSTRA_HEADS[width]
    for key in ("image_size", "conv_stride", "num_frames"):
        if key not in geometry:
            raise ConversionError(f"{geometry_source}: missing field '{key}'")
    reduced = _tensor(tensors, f"{stab_prefix}lmhra1.pos_embed.1.weight", folder).shape[0]
    mlp_hidden = _tensor(tensors, f"{stab_prefix}dec.mlp.c_fc.weight", folder).shape[0]
    config = VideoPandaConfig(
        width=width,
        image_size=int(geometry["image_size"]),
        patch_size=kernel,
        lsd_stride=int(geometry["conv_stride"]),
        chunk_length=int(geometry["num_frames"]),
        num_frames=int(num_frames or geometry.get("all_num_frames", DEFAULT_NUM_FRAMES)),
        gstra_heads=gstra_heads,
        lsd_heads=lsd_heads,
        fsra_heads=fsra_heads,
        lmhra_channels=reduced,
        gstra_mlp_ratio=mlp_hidden / width,
        projector=official.get("mm_projector_type", "mlp2x_gelu"),
        llm=_llm_architecture(official, where),
        attn_implementation=attn_implementation,
        extra={"official_config": {k: v for k, v in official.items() if k.startswith("mm_")}},
    )
    return config, geometry_source


def _tensor(tensors: dict[str, torch.Tensor], key: str, folder: Path) -> torch.Tensor:
    if key not in tensors:
        raise ConversionError(f"'{folder}': required tensor {key} is missing")
    return tensors[key]


def _pick_prefix(tensors: dict[str, torch.Tensor], *prefixes: str) -> str:
    for prefix in prefixes:
        if any(k.startswith(prefix) for k in tensors):
            return prefix
    raise ConversionError(f"no tensor under any of {list(prefixes)}")


def _map_stab_key(suffix: str, value: torch.Tensor, out: dict[str, torch.Tensor]) -> bool:
    """Add the leanvl tensor(s) for STAB key ``suffix``; False if the key is unknown."""
    if suffix in ("dec.attn.in_proj_weight", "dec.attn.in_proj_bias"):
        kind = "weight" if suffix.endswith("weight") else "bias"
        for name, part in zip("qkv", value.chunk(3), strict=True):
            out[f"stab.gstra.{name}.{kind}"] = part.clone()  # own storage
        return True
    for src, dst in (
        ("local_attention.kv.1.weight", "lsd"),
        ("global_attention.kv.1.weight", "fsra"),
    ):
        if suffix == src:
            keys, values = value.chunk(2)
            out[f"stab.{dst}.k.weight"] = keys.clone()
            out[f"stab.{dst}.v.weight"] = values.clone()
            return True
    for src, dst in _STAB_RENAMES.items():
        if suffix == src or (src.endswith(".") and suffix.startswith(src)):
            out["stab." + dst + suffix[len(src) :]] = value
            return True
    return False


def map_state_dict(
    tensors: dict[str, torch.Tensor], stab_prefix: str, projector_prefix: str
) -> tuple[dict[str, torch.Tensor], dict[str, list[str]], list[str]]:
    """Map official keys to leanvl keys.

    Returns:
        (leanvl state dict, dropped keys by reason, unknown keys).
    """
    out: dict[str, torch.Tensor] = {}
    dropped: dict[str, list[str]] = collections.defaultdict(list)
    unknown: list[str] = []
    aliases = {
        "model.video_tower.": "model.vision_tower.",
        "model.video_projector.": "model.mm_projector.",
    }
    used = {stab_prefix, projector_prefix}
    for key in sorted(tensors):
        value = tensors[key]
        reason = next((why for pattern, why in _DROP if pattern.search(key)), None)
        if reason is not None:
            dropped[reason].append(key)
            continue
        prefix = next((p for p in (*aliases, *aliases.values()) if key.startswith(p)), None)
        if prefix is not None and prefix not in used:
            twin = {**aliases, **{v: k for k, v in aliases.items()}}[prefix] + key[len(prefix) :]
            if twin in tensors and not torch.equal(tensors[twin], value):
                raise ConversionError(
                    f"{key} and {twin} are aliases of one module in the official model but "
                    "hold different values; refusing to pick one"
                )
            dropped["alias of the used tower/projector"].append(key)
            continue
        if key.startswith(stab_prefix):
            if not _map_stab_key(key[len(stab_prefix) :], value, out):
                unknown.append(key)
        elif key.startswith(projector_prefix):
            out["projector." + key[len(projector_prefix) :]] = value
        elif key.startswith(("model.", "lm_head.")):
            out["llm." + key] = value
        else:
            unknown.append(key)
    return out, dict(dropped), unknown


_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _target_dtype(tensors: dict[str, torch.Tensor], dtype: str) -> torch.dtype:
    if dtype in _DTYPES:
        return _DTYPES[dtype]
    if dtype != "auto":
        raise ConversionError(f"dtype={dtype!r}: expected auto, {', '.join(_DTYPES)}")
    counts = collections.Counter(t.dtype for t in tensors.values() if t.is_floating_point())
    return counts.most_common(1)[0][0] if counts else torch.float32


def convert_videopanda(
    in_dir: str | Path,
    out_dir: str | Path,
    *,
    dtype: str = "auto",
    stab_config: str | Path | None = None,
    gstra_heads: int | None = None,
    lsd_heads: int = 8,
    fsra_heads: int = 8,
    num_frames: int | None = None,
    attn_implementation: str = "sdpa",
) -> ConversionReport:
    """Convert the official checkpoint folder ``in_dir`` into the leanvl folder ``out_dir``.

    Args:
        in_dir: HF ``save_pretrained`` folder (``config.json`` + shards + optional index).
        out_dir: leanvl checkpoint folder to write (replaced atomically).
        dtype: ``auto`` (the source's floating dtype), ``float32``, ``float16``, ``bfloat16``.
        stab_config: the STAB ``preprocessor_config.json`` (or its folder); default: the
            ``mm_video_tower`` folder if found next to the checkpoint, else the released one.
        gstra_heads: GSTRA heads; default from the official width table (1024 -> 8).
        lsd_heads: LSD heads (official constructor default 8).
        fsra_heads: FSRA heads (official constructor default 8).
        num_frames: frames per video (default: ``all_num_frames`` of the STAB config, else 8).
        attn_implementation: LLM attention backend recorded in the config.

    Raises:
        ConversionError: missing files or fields, unknown or missing keys, shape mismatches.
    """
    from leanvl.checkpoint import save_model

    folder = Path(in_dir)
    if not folder.is_dir():
        raise ConversionError(f"'{folder}': not a folder")
    _target_dtype({}, dtype)  # reject a bad dtype before reading gigabytes
    tensors, shards = read_checkpoint_folder(folder)
    stab_prefix = _pick_prefix(tensors, "model.video_tower.", "model.vision_tower.")
    projector_prefix = _pick_prefix(tensors, "model.video_projector.", "model.mm_projector.")
    config, geometry_source = videopanda_config_from_official(
        folder,
        tensors,
        stab_prefix,
        stab_config=Path(stab_config) if stab_config is not None else None,
        gstra_heads=gstra_heads,
        lsd_heads=lsd_heads,
        fsra_heads=fsra_heads,
        num_frames=num_frames,
        attn_implementation=attn_implementation,
    )
    mapped, dropped, unknown = map_state_dict(tensors, stab_prefix, projector_prefix)
    if unknown:
        raise ConversionError(f"'{folder}': {len(unknown)} unknown key(s): {unknown[:8]}")
    target = _target_dtype(tensors, dtype)
    with torch.device("meta"):
        model = VideoPanda(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(mapped))
    extra = sorted(set(mapped) - set(expected))
    if missing or extra:
        raise ConversionError(
            f"'{folder}': checkpoint does not match the model: missing {missing[:8]}, "
            f"unexpected {extra[:8]}"
        )
    for key, ref in expected.items():
        if mapped[key].shape != ref.shape:
            raise ConversionError(
                f"'{folder}': tensor for {key} has shape {tuple(mapped[key].shape)}, "
                f"expected {tuple(ref.shape)}"
            )
        if mapped[key].is_floating_point():
            mapped[key] = mapped[key].to(target)
    model.load_state_dict(mapped, strict=True, assign=True)
    report = ConversionReport(
        source=str(folder),
        shards=shards,
        stab_prefix=stab_prefix,
        projector_prefix=projector_prefix,
        converted=len(mapped),
        dropped=dropped,
        geometry_source=geometry_source,
        dtype=str(target).removeprefix("torch."),
        parameters=_parameter_counts(model),
    )
    save_model(model, out_dir, extra={"conversion": asdict(report)})
    return report


def _parameter_counts(model: VideoPanda) -> dict[str, int]:
    def count(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    stab, projector = count(model.stab), count(model.projector)
    return {
        "stab": stab,
        "projector": projector,
        "stab+projector": stab + projector,
        "llm": count(model.llm) if model.llm is not None else 0,
    }
