"""Issue 11, item 6: non-finite loss or gradient (``trainer.nonfinite=stop|skip``).

NaN is injected at chosen steps by wrapping the task's ``losses`` (a test-only override of the
runner's task hook): either one loss term becomes NaN, or a gradient hook turns one
parameter's gradient into NaN while the loss stays finite.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch

from leanvl.training import runner
from leanvl.training.config import load_train_config
from leanvl.training.module import VideoTextModule, check_finite
from tests.reliability.helpers import recipe, run_cli, weights, write_recipe

pytestmark = pytest.mark.faults


def _inject(monkeypatch, loss_steps=(), grad_steps=()):
    """Make the task's loss NaN at ``loss_steps`` and a gradient NaN at ``grad_steps``
    (steps counted by calls to ``losses``: one per optimiser step here)."""
    real_task = runner._task
    calls = {"n": 0, "hook": None}

    def task_hook(cfg, hooks, dm):
        task = real_task(cfg, hooks, dm)
        real_losses = task.losses

        def losses(model, batch):
            step = calls["n"]
            calls["n"] += 1
            if calls["hook"] is not None:
                calls["hook"].remove()
                calls["hook"] = None
            terms = real_losses(model, batch)
            if step in loss_steps:
                name = sorted(terms)[0]
                terms[name] = terms[name] * float("nan")
            if step in grad_steps:
                param = next(model.parameters())
                calls["hook"] = param.register_hook(lambda g: g * float("nan"))
            return terms

        task.losses = losses
        return task

    monkeypatch.setattr(runner, "_task", task_hook)


def _snapshots(monkeypatch) -> dict[int, dict[str, torch.Tensor]]:
    """Record the weights and AdamW state at the start of every training step."""
    seen: dict[int, dict[str, torch.Tensor]] = {}
    real = VideoTextModule.on_train_batch_start

    def spy(self, batch, batch_idx):
        state = {f"w.{k}": v.detach().clone() for k, v in self.model.state_dict().items()}
        opt = self.optimizers().optimizer
        for i, s in enumerate(opt.state.values()):
            for k, v in s.items():
                state[f"opt.{i}.{k}"] = torch.as_tensor(v).detach().clone()
        seen[self.global_step] = state
        return real(self, batch, batch_idx)

    monkeypatch.setattr(VideoTextModule, "on_train_batch_start", spy)
    return seen


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _all_finite(folder: Path) -> bool:
    return all(t.isfinite().all() for t in weights(folder).values())


def _ckpt_finite(path: Path) -> bool:
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    return all(t.isfinite().all() for t in state.values() if t.is_floating_point())


@pytest.mark.parametrize("kind", ["loss", "grad"])
def test_skip_drops_the_update_and_goes_on(synth, tmp_path, monkeypatch, kind):
    _inject(monkeypatch, **{f"{kind}_steps": (2,)})
    seen = _snapshots(monkeypatch)
    run = tmp_path / "run"
    cfg = recipe(synth, run, trainer={"max_steps": 5, "nonfinite": "skip"})
    result = runner.train(load_train_config(cfg))
    assert result["steps"] == 5 and result["nonfinite_skips"] == 1
    assert not _equal(seen[1], seen[2])  # a normal step changes weights and AdamW state
    assert _equal(seen[2], seen[3])  # the skipped step changed nothing
    assert not _equal(seen[3], seen[4])  # and training goes on
    steps = [s for s, _ in result["losses"]]
    assert steps == ([0, 1, 3, 4] if kind == "loss" else [0, 1, 2, 3, 4])
    assert all(math.isfinite(v) for _, v in result["losses"])
    with open(run / "logs" / "metrics.csv", newline="") as f:
        counts = [r["train/nonfinite_skips"] for r in csv.DictReader(f)]
    assert "1.0" in counts
    assert _all_finite(run / "model") and _ckpt_finite(run / "checkpoints" / "last.ckpt")


def test_too_many_skips_stop_the_run(synth, tmp_path, monkeypatch):
    _inject(monkeypatch, loss_steps=(1, 3))
    cfg = recipe(
        synth, tmp_path / "run", trainer={"max_steps": 6, "nonfinite": "skip",
                                          "max_nonfinite_skips": 1}
    )  # fmt: skip
    with pytest.raises(
        FloatingPointError, match=r"at step 3: 2 skipped steps.*max_nonfinite_skips=1"
    ):
        runner.train(load_train_config(cfg))


@pytest.mark.parametrize("kind", ["loss", "grad"])
def test_stop_names_the_step_and_terms_and_saves_no_nan(synth, tmp_path, monkeypatch, capsys, kind):
    _inject(monkeypatch, **{f"{kind}_steps": (3,)})
    run = tmp_path / "run"
    cfg = recipe(synth, run, trainer={"max_steps": 6, "checkpoint_every_n_steps": 2,
                                      "keep_checkpoints": -1})  # fmt: skip
    code, _, err = run_cli(["train", write_recipe(tmp_path / "r.yaml", cfg)], capsys)
    text = " ".join(err.split())
    assert code == 1 and "Traceback" not in err
    assert "at step 3 (trainer.nonfinite=stop)" in text
    if kind == "loss":
        assert "loss=nan" in text and "vtc=" in text and "itm=" in text and "mlm=" in text
    else:
        assert "non-finite gradient of" in text
    ckpts = sorted(p.name for p in (run / "checkpoints").glob("*.ckpt"))
    assert ckpts == ["last.ckpt", "step2.ckpt"]
    for name in ckpts:
        assert _ckpt_finite(run / "checkpoints" / name)
        state = torch.load(run / "checkpoints" / name, map_location="cpu", weights_only=True)
        assert state["global_step"] == 2
    assert _all_finite(run / "model")
    assert list(run.glob(".model.*")) == []


def test_nan_weights_are_never_written(synth, tmp_path):
    from leanvl.registry import create_model

    model = create_model("allinone_tiny", patch_size=8, hidden_size=64, depth=2, num_heads=2,
                         vtc_dim=64, image_size=32, num_frames=3)  # fmt: skip
    check_finite(model, "a test")
    with torch.no_grad():
        next(model.parameters())[0] = float("nan")
    with pytest.raises(FloatingPointError, match="refusing to save a test: non-finite weights"):
        check_finite(model, "a test")
