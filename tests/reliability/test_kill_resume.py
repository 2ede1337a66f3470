"""Issue 11, item 2: ``kill -9`` during training, then ``resume=auto``.

A real ``leanvl train`` subprocess is killed with SIGKILL at a random point after its first
checkpoint; rerun with ``resume=auto`` it must end with the weights of an uninterrupted run with
the same seed (``trainer.deterministic=true``) within 1e-6. Checkpoints are written atomically:
a kill in the middle of writing ``last.ckpt`` (injected by a wrapper script that kills its own
process halfway through the write) leaves the previous ``last.ckpt`` readable, and a truncated
``last.ckpt`` (what an in-place writer leaves) makes ``resume=auto`` fall back to the newest
readable ``step<N>.ckpt``.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from leanvl.training.config import load_train_config
from leanvl.training.runner import train
from tests.reliability.helpers import (
    assert_same_weights,
    leanvl_exe,
    recipe,
    run_cli,
    subprocess_env,
    weights,
    write_recipe,
)

pytestmark = pytest.mark.faults

STEPS = 16
EVERY = 2
TRAINER = {
    "max_steps": STEPS,
    "checkpoint_every_n_steps": EVERY,
    "keep_checkpoints": -1,
    "deterministic": True,
}


@pytest.fixture(scope="module")
def reference(synth, tmp_path_factory) -> dict[str, torch.Tensor]:
    """Final weights of the uninterrupted run."""
    run = tmp_path_factory.mktemp("reference") / "run"
    train(load_train_config(recipe(synth, run, trainer=TRAINER)))
    return weights(run / "model")


def _step_of(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])


def test_sigkill_at_a_random_step_then_resume_auto_matches_uninterrupted(
    synth, reference, tmp_path, capsys
):
    rng = random.Random(os.urandom(8))
    after = rng.randrange(1, STEPS // EVERY - 1)  # checkpoints to wait for (>= 1)
    delay = rng.uniform(0.0, 0.6)  # then kill somewhere in the next steps
    run = tmp_path / "run"
    cfg = write_recipe(tmp_path / "r.yaml", recipe(synth, run, trainer=TRAINER))
    proc = subprocess.Popen(
        [leanvl_exe(), "train", str(cfg), "resume=auto"],
        cwd=tmp_path,
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    target = run / "checkpoints" / f"step{after * EVERY}.ckpt"
    deadline = time.monotonic() + 240
    while not target.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    _, stderr = proc.communicate(timeout=60)
    what = f"kill after step{after * EVERY}.ckpt + {delay:.2f} s"
    assert proc.returncode == -signal.SIGKILL, f"{what}: exit {proc.returncode} {stderr[-2000:]}"
    last = run / "checkpoints" / "last.ckpt"
    # killed between the first step<N>.ckpt and the first last.ckpt: nothing to resume from,
    # the rerun starts over (and must still end equal to the reference)
    killed_at = _step_of(last) if last.exists() else 0
    assert 0 <= killed_at < STEPS, what
    with capsys.disabled():  # printed in the test output: where the kill landed
        print(f"\n{what}: last.ckpt at step {killed_at} of {STEPS}")

    code, _, err = run_cli(["train", cfg, "resume=auto"], capsys)  # the rerun, in this process
    assert code == 0, err[-3000:]
    assert _step_of(run / "checkpoints" / "last.ckpt") == STEPS
    assert_same_weights(weights(run / "model"), reference, atol=1e-6)


_DIE_IN_SAVE = """
import io, os, signal, sys
import torch
from leanvl.training import callbacks

real, writes = callbacks.SafeCheckpointIO._write, []

def dying(self, checkpoint, f):
    writes.append(1)
    if len(writes) == int(sys.argv[2]):  # this write is cut in half, then the process dies
        buf = io.BytesIO()
        torch.save(checkpoint, buf)
        f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
        f.flush()
        os.fsync(f.fileno())
        os.kill(os.getpid(), signal.SIGKILL)
    real(self, checkpoint, f)

callbacks.SafeCheckpointIO._write = dying
from leanvl.cli import main
main(["train", sys.argv[1], "resume=auto"])
"""


def test_kill_inside_a_checkpoint_write_keeps_the_previous_one(synth, reference, tmp_path, capsys):
    run = tmp_path / "run"
    cfg = write_recipe(tmp_path / "r.yaml", recipe(synth, run, trainer=TRAINER))
    script = tmp_path / "die_in_save.py"
    script.write_text(_DIE_IN_SAVE)
    # writes: step2.ckpt, last.ckpt (step 2), step4.ckpt, last.ckpt (step 4) <- killed here
    proc = subprocess.run(
        [sys.executable, str(script), str(cfg), "4"],
        cwd=tmp_path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    folder = run / "checkpoints"
    partial = list(folder.glob(".*.tmp"))
    assert len(partial) == 1 and partial[0].name.startswith(".last.ckpt.")
    with pytest.raises(RuntimeError):  # the half-written file is not a checkpoint ...
        torch.load(partial[0], weights_only=True)
    assert _step_of(folder / "last.ckpt") == 2  # ... and the previous last.ckpt is intact
    assert _step_of(folder / "step4.ckpt") == 4

    code, _, err = run_cli(["train", cfg, "resume=auto"], capsys)
    assert code == 0, err[-3000:]
    assert not partial[0].exists()  # resume=auto cleans it up
    assert_same_weights(weights(run / "model"), reference, atol=1e-6)


def test_resume_auto_passes_over_a_truncated_last_ckpt(synth, reference, tmp_path, caplog):
    run = tmp_path / "run"
    train(load_train_config(recipe(synth, run, trainer=TRAINER)))  # checkpoints 2, 4, ..., 16
    folder = run / "checkpoints"
    for step in range(6, STEPS + 1, EVERY):  # as if the run had been killed writing step 6
        (folder / f"step{step}.ckpt").unlink()
    last = folder / "last.ckpt"
    last.write_bytes(last.read_bytes()[:5000])  # what an in-place writer killed mid-write leaves
    (run / "model" / "model.safetensors").unlink()
    with caplog.at_level("WARNING", logger="leanvl.training"):
        result = train(load_train_config(recipe(synth, run, trainer=TRAINER, resume="auto")))
    assert "resuming from" in caplog.text and "step4.ckpt" in caplog.text
    assert result["steps"] == STEPS and result["losses"][0][0] == 4
    assert_same_weights(weights(run / "model"), reference, atol=1e-6)
