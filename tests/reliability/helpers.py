"""Shared pieces of the fault-injection tests: a tiny synthetic dataset, ways to damage it, a
small recipe and CLI runners (in-process and as a real ``leanvl`` subprocess)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from leanvl.cli import main as cli_main
from leanvl.data.synth import SynthConfig, generate

TRAIN_CLIPS = 80
DAMAGE = ("truncated", "zero-byte", "missing", "not-a-video")
"""The four ways a video is damaged; 4 of 80 clips = 5 %."""


def make_synth(root: Path) -> Path:
    """The synthetic benchmark, tiny: 80 train / 10 test clips of 4 frames at 32x32."""
    config = SynthConfig(
        train=TRAIN_CLIPS, val=0, test=10, frames=4, size=32, captions_per_clip=1, workers=1
    )
    return generate(root, config)


def copy_dataset(source: Path, dest: Path) -> Path:
    """A private copy of ``source`` (the tests damage files)."""
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns(".leanvl_cache"))
    return dest


def damage(root: Path, names: list[str]) -> dict[str, str]:
    """Damage ``root/videos/<name>`` in the ways of :data:`DAMAGE` (in order).

    Returns:
        ``{absolute path: kind}`` of the damaged files.
    """
    out = {}
    for name, kind in zip(names, DAMAGE, strict=False):
        path = root / "videos" / name
        data = path.read_bytes()
        if kind == "truncated":
            path.write_bytes(data[: len(data) // 2])
        elif kind == "zero-byte":
            path.write_bytes(b"")
        elif kind == "missing":
            path.unlink()
        else:
            path.write_text("this is a text file, not a video\n" * 20)
        out[str(path)] = kind
    return out


def recipe(root: Path, run_dir: Path, task: str = "pretrain", **sections) -> dict:
    """A small All-in-one recipe over the synthetic set (32 px, patch 8, 2 blocks of width 64)."""
    files = {"pretrain": "ret", "qa": "qa"}[task]
    cfg = {
        "task": {"name": task, "mlm_weight": 0.5},
        "data": {
            "root": str(root),
            "train_file": f"annotations/{files}_train.json",
            "test_file": f"annotations/{files}_test.json",
            "answers_file": "annotations/qa_answers.json",
            "image_size": 32,
            "num_frames": 3,
            "cache_frames": 4,
            "batch_size": 8,
            "eval_batch_size": 10,
            "max_text_len": 24,
        },
        "model": {
            "overrides": {
                "patch_size": 8,
                "hidden_size": 64,
                "depth": 2,
                "num_heads": 2,
                "vtc_dim": 64,
                "drop_rate": 0.0,
                "drop_path_rate": 0.0,
            }
        },
        "optim": {"lr": 1e-3},
        "trainer": {
            "max_steps": 4,
            "progress": "none",
            "log_every_n_steps": 1,
            "num_threads": 1,
            "deterministic": True,
        },
        "eval": {"at_end": False},
        "run_dir": str(run_dir),
        "resume": "never",
    }
    for section, values in sections.items():
        if isinstance(values, dict):
            cfg[section].update(values)
        else:
            cfg[section] = values
    return cfg


def write_recipe(path: Path, cfg: dict) -> Path:
    """Write ``cfg`` as YAML to ``path``."""
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    """Run ``leanvl ARGS`` in this process; ``(exit code, stdout, stderr)``."""
    code = 0
    try:
        cli_main([str(a) for a in args])
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def leanvl_exe() -> str:
    """The ``leanvl`` script of this environment."""
    exe = Path(sys.executable).with_name("leanvl")
    if not exe.is_file():
        pytest.fail(f"no leanvl script beside {sys.executable}")
    return str(exe)


def subprocess_env() -> dict[str, str]:
    """Environment of the ``leanvl`` subprocesses: one thread, passive OpenMP waits."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}


def leanvl(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``leanvl ARGS`` as a subprocess to completion."""
    return subprocess.run(
        [leanvl_exe(), *map(str, args)],
        cwd=cwd,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def weights(folder: Path) -> dict[str, torch.Tensor]:
    """The tensors of a leanvl checkpoint folder."""
    return load_file(str(folder / "model.safetensors"))


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol=1e-6):
    """Equal keys and every tensor equal within ``atol``."""
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=atol, msg=key)
