"""Issue 11, item 5: a crafted pickle that runs a shell command when unpickled.

Every loader must refuse it with a clear message, and the command must never run: the marker
file it would create never appears. Covered: ``leanvl.load``, ``leanvl convert allinone``,
``svitt`` and ``videopanda``, ``leanvl train resume=<file>``, ``resume=auto`` with the file as
``last.ckpt``, and ``leanvl eval ckpt=<file>``.
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import leanvl
from leanvl.registry import create_model
from tests.reliability.helpers import recipe, run_cli, write_recipe

pytestmark = pytest.mark.faults


class _Payload:
    """Unpickling this runs ``os.system(command)``."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _crafted(path: Path, marker: Path) -> Path:
    """A Lightning-looking checkpoint (torch.save zip) whose pickle calls os.system."""
    payload = _Payload(f"touch {marker}")
    state = {"state_dict": {"model.w": torch.zeros(2)}, "global_step": 3, "x": payload}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


@pytest.fixture()
def evil(tmp_path) -> tuple[Path, Path]:
    marker = tmp_path / "PWNED"
    return _crafted(tmp_path / "evil.ckpt", marker), marker


def test_the_payload_is_live(tmp_path):
    """Guard: a plain unpickling of the crafted file does run the command (so the tests below
    would see the marker if any loader unpickled it)."""
    marker = tmp_path / "live"
    path = _crafted(tmp_path / "live.ckpt", marker)
    code = "import sys, torch; torch.load(sys.argv[1], weights_only=False)"  # the unsafe way
    subprocess.run([sys.executable, "-c", code, str(path)], check=False, timeout=120)
    assert marker.exists()


def test_leanvl_load_refuses_a_pickle_as_weights(evil, tmp_path):
    path, marker = evil
    model = create_model("allinone_tiny", patch_size=8, hidden_size=64, depth=2, num_heads=2,
                         vtc_dim=64, image_size=32, num_frames=3)  # fmt: skip
    folder = leanvl.save_model(model, tmp_path / "ckpt")
    shutil.copy(path, folder / "model.safetensors")
    with pytest.raises(ValueError, match="refused.*never unpickled") as err:
        leanvl.load(folder)
    assert str(folder / "model.safetensors") in str(err.value)
    with pytest.raises(ValueError, match="not a leanvl checkpoint folder"):
        leanvl.load(path)
    assert not marker.exists()


@pytest.mark.parametrize("family", ["allinone", "svitt", "videopanda"])
def test_convert_refuses(evil, tmp_path, capsys, family):
    path, marker = evil
    source = path
    if family == "videopanda":  # a Hugging Face folder whose weights file is the pickle
        source = tmp_path / "hf"
        source.mkdir()
        shutil.copy(path, source / "pytorch_model.bin")
    out = tmp_path / "out"
    code, _, err = run_cli(["convert", family, source, out], capsys)
    text = " ".join(err.split())
    assert code != 0 and "Traceback" not in err
    assert "posix.system" in text and "refused" in text
    assert not marker.exists() and not out.exists()


@pytest.fixture()
def config(synth, tmp_path) -> Path:
    return write_recipe(tmp_path / "r.yaml", recipe(synth, tmp_path / "run"))


def test_resume_from_an_explicit_path_refuses(evil, config, tmp_path, capsys):
    path, marker = evil
    code, _, err = run_cli(["train", config, f"resume={path}"], capsys)
    assert code == 1 and "Traceback" not in err
    assert f"'{path}': refused to load global 'posix.system'" in " ".join(err.split())
    assert not marker.exists()
    assert not (tmp_path / "run" / "model").exists()


def test_resume_auto_refuses_a_crafted_last_ckpt(evil, config, tmp_path, capsys):
    path, marker = evil
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    shutil.copy(path, last)
    code, _, err = run_cli(["train", config, "resume=auto"], capsys)
    assert code == 1 and "Traceback" not in err
    assert f"'{last}': refused to load global 'posix.system'" in " ".join(err.split())
    assert not marker.exists()
    assert not (tmp_path / "run" / "model").exists()


def test_eval_refuses_a_crafted_ckpt(evil, config, capsys):
    path, marker = evil
    code, _, err = run_cli(["eval", config, f"ckpt={path}"], capsys)
    assert code == 1 and "Traceback" not in err
    assert "posix.system" in err and "refused" in err
    assert not marker.exists()


def test_lightning_never_unpickles_unsafely(evil, synth, tmp_path):
    """Even past the runner's own check, Lightning's load of ``ckpt_path`` goes through
    SafeCheckpointIO (weights-only), whatever ``weights_only`` Lightning asks for."""
    from leanvl.convert.safe_load import UnsafeCheckpointError
    from leanvl.training.callbacks import SafeCheckpointIO

    path, marker = evil
    with pytest.raises(UnsafeCheckpointError, match="posix.system"):
        SafeCheckpointIO().load_checkpoint(path, weights_only=False)
    with pytest.raises(pickle.UnpicklingError):  # what torch itself does without our wrapper
        torch.load(path, weights_only=True)
    assert not marker.exists()
