"""The demo report: targets, per-kind table, and what it says when a target is missed."""

from __future__ import annotations

from leanvl.training.report import write_report


def _metrics(t2v_r1: float, temporal: float, shuffled: float, no_roll: float) -> dict:
    qa = {
        "accuracy": 0.75,
        "accuracy_in_vocab": 0.75,
        "n": 40,
        "n_out_of_vocab": 0,
        "by_type": {"static": 0.8, "temporal": temporal},
        "by_kind": {"color": 0.8, "direction": temporal},
        "temporal_shuffled": shuffled,
        "shuffled": {"by_type": {"temporal": shuffled}, "by_kind": {"direction": shuffled}},
    }
    return {
        "retrieval": {"t2v_r1": t2v_r1, "t2v_r5": 0.9, "v2t_r1": 0.5},
        "qa": qa,
        "mc": {"accuracy": 0.6, "shuffled": {"accuracy": 0.5}},
        "ablation": {
            "no_roll": {"qa": {"by_type": {"temporal": no_roll}, "by_kind": {"color": 0.7}}}
        },
        "chance": {
            "t2v_r1": 0.005,
            "t2v_r5": 0.025,
            "v2t_r1": 0.005,
            "qa": 0.13,
            "qa_blind": 0.32,
            "qa_by_type": {"static": 0.26, "temporal": 0.37},
            "qa_note": "n",
            "qa_blind_note": "b",
            "mc": 0.2,
        },  # fmt: skip
        "plan": {
            "synth": {"train": 10, "val": 0, "test": 5, "frames": 16, "size": 112},
            "model": {},
            "steps": 5,
            "batch_size": 2,
            "num_frames": 3,
            "lr": 1e-3,
        },  # fmt: skip
        "seconds": 1.0,
        "timing": {"synth": 1.0},
    }


def test_report_lists_kinds_and_explains_missed_targets(tmp_path):
    write_report(tmp_path, _metrics(0.2, 0.6, 0.5, 0.55), [], quick=False, data_dir=tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert "| direction | 60.0% | 50.0% | n/a |" in text
    assert "| color | 80.0% | n/a | 70.0% |" in text
    assert "**Targets not met** (text→video R@1, shuffled-frame drop, rolling-off drop)" in text


def test_report_without_missed_targets_or_in_quick_mode(tmp_path):
    write_report(tmp_path, _metrics(0.5, 0.8, 0.5, 0.6), [], quick=False, data_dir=tmp_path)
    assert "Targets not met" not in (tmp_path / "report.md").read_text()
    write_report(tmp_path, _metrics(0.2, 0.6, 0.5, 0.55), [], quick=True, data_dir=tmp_path)
    assert "Targets not met" not in (tmp_path / "report.md").read_text()
