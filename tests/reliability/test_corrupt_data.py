"""Issue 11, item 1: damaged videos (truncated, zero-byte, missing, not a video).

About 5 % of the training clips are damaged. ``data.on_error=skip`` trains to completion and
reports exactly the damaged files (logged, in the result, in metrics.csv); above
``data.max_bad_fraction`` the run stops before training with the list; the default
``on_error=raise`` names the file and the reason; ``leanvl data scan`` finds the same files.
Both the frame-cache path and the decode-on-demand path are covered.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from leanvl.training.config import load_train_config
from leanvl.training.runner import train
from tests.reliability.helpers import (
    TRAIN_CLIPS,
    copy_dataset,
    damage,
    recipe,
    run_cli,
    write_recipe,
)

pytestmark = pytest.mark.faults

DAMAGED = ["train_00003.mp4", "train_00017.mp4", "train_00042.mp4", "train_00066.mp4"]


@pytest.fixture(scope="module")
def damaged(synth, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A copy of the synthetic set with 4 of its 80 training clips damaged (5 %)."""
    root = copy_dataset(synth, tmp_path_factory.mktemp("damaged") / "data")
    return root, damage(root, DAMAGED)


def _skipped_paths(result: dict) -> dict[str, str]:
    (items,) = result["skipped_videos"].values()
    return {item["path"]: item["reason"] for item in items}


def _metric(run: Path, name: str) -> list[float]:
    with open(run / "logs" / "metrics.csv", newline="") as f:
        return [float(row[name]) for row in csv.DictReader(f) if row.get(name)]


@pytest.mark.parametrize("cache", [True, False], ids=["cache", "no-cache"])
def test_skip_trains_to_completion_and_reports_exactly_the_bad_files(
    damaged, tmp_path, cache, caplog
):
    root, bad = damaged
    run = tmp_path / "run"
    data = {
        "on_error": "skip",
        "cache": cache,
        "cache_dir": str(tmp_path / "cache"),
        "num_workers": 1 if cache else 0,  # the cache decodes in a worker process
    }
    with caplog.at_level("WARNING", logger="leanvl.training"):
        result = train(load_train_config(recipe(root, run, data=data, eval={"at_end": True})))
    assert result["steps"] == 4 and len(result["losses"]) == 4
    skipped = _skipped_paths(result)
    assert set(skipped) == set(bad)
    reasons = {bad[p]: r for p, r in skipped.items()}
    assert reasons["missing"] == "missing file"
    assert reasons["zero-byte"] == "zero bytes"
    assert "truncated" in reasons["truncated"] or "not a video" in reasons["truncated"]
    assert reasons["not-a-video"].startswith("not a video")
    assert _metric(run, "data/skipped_videos") == [4.0]
    logged = caplog.text
    assert f"4 of {TRAIN_CLIPS} videos" in logged and all(p in logged for p in bad)
    assert (run / "model" / "model.safetensors").is_file()
    report = json.loads((run / "metrics_test.json").read_text())
    assert report["skipped_videos"] == result["skipped_videos"]
    assert report["metrics"]["n_videos"] == 10


@pytest.mark.parametrize("cache", [True, False], ids=["cache", "no-cache"])
def test_too_many_bad_videos_stop_before_training_with_the_list(damaged, tmp_path, capsys, cache):
    root, bad = damaged
    run = tmp_path / "run"
    cfg = write_recipe(tmp_path / "r.yaml", recipe(root, run))
    over = [
        "data.on_error=skip",
        "data.max_bad_fraction=0.04",
        f"data.cache={str(cache).lower()}",
        f"data.cache_dir={tmp_path / 'cache'}",
    ]
    code, _, err = run_cli(["train", cfg, *over], capsys)
    assert code == 1
    assert f"4 of {TRAIN_CLIPS} videos" in err and "max_bad_fraction=0.04" in err
    assert all(p in err for p in bad)
    assert "Traceback" not in err
    assert not (run / "checkpoints").exists() and not (run / "model").exists()


def test_default_raise_names_every_bad_file_and_its_reason(damaged, tmp_path, capsys):
    root, bad = damaged
    cfg = write_recipe(tmp_path / "r.yaml", recipe(root, tmp_path / "run"))
    code, _, err = run_cli(["train", cfg, f"data.cache_dir={tmp_path / 'cache'}"], capsys)
    assert code == 1 and "Traceback" not in err
    assert "data.on_error=raise" in err
    for path in bad:
        line = next(line for line in err.splitlines() if path in line)
        assert line.split(path, 1)[1].startswith(": ")  # "  <path>: <reason>"
    assert "missing file" in err and "zero bytes" in err and "not a video" in err


def test_raise_without_cache_names_the_file_and_reason(synth, tmp_path, capsys):
    root = copy_dataset(synth, tmp_path / "data")
    (path,) = damage(root, ["train_00005.mp4"])  # truncated: exists, fails when decoded
    cfg = write_recipe(tmp_path / "r.yaml", recipe(root, tmp_path / "run"))
    code, _, err = run_cli(["train", cfg, "data.cache=false", "trainer.max_steps=12"], capsys)
    assert code == 1 and "Traceback" not in err
    assert path in err and ("truncated" in err or "not a video" in err)


def test_data_scan_finds_exactly_the_damaged_files(damaged, tmp_path, capsys):
    root, bad = damaged
    report = tmp_path / "scan.json"
    code, _, _ = run_cli(
        [
            "data",
            "scan",
            root / "annotations" / "ret_train.json",
            "--video-root",
            root / "videos",
            "--workers",
            "0",
            "--report",
            report,
        ],
        capsys,
    )
    assert code == 1
    found = json.loads(report.read_text())
    assert found["scanned"] == TRAIN_CLIPS
    assert {b["path"] for b in found["bad_videos"]} == set(bad)
