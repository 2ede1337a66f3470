"""Datasets decode real videos (written by leanvl.video.write_video) and handle bad ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from leanvl.data.datasets import (
    EgoClipDataset,
    EgoMCQDataset,
    MCVideoDataset,
    QAVideoDataset,
    SkippedVideos,
    VideoBatchCollator,
    VideoTextDataset,
    egoclip_window,
    multi_hot,
    resolve_video_path,
)
from leanvl.data.records import (
    EgoClipRecord,
    EgoMCQRecord,
    MCRecord,
    QARecord,
    RetrievalRecord,
)
from leanvl.text import load_tokenizer
from leanvl.video import VideoDecodeError, write_video

SIZE = 32


def ramp_video(path, num_frames=16, start=20, step=8, fps=8.0):
    """Frame i is flat gray ``start + step * i`` so decoded values reveal the frame index."""
    frames = np.stack(
        [np.full((SIZE, SIZE, 3), start + step * i, np.uint8) for i in range(num_frames)]
    )
    return write_video(path, frames, fps=fps)


def frame_values(clip):
    """Mean value of each frame of a (T, 3, H, W) clip."""
    return clip.float().mean(dim=(1, 2, 3))


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    ramp_video(root / "up.mp4")
    ramp_video(root / "down.mp4", start=200, step=-8)
    (root / "zero.mp4").write_bytes(b"")
    (root / "text.mp4").write_text("not a video at all\n")
    ramp_video(root / "ego" / "uid1" / "0.mp4", num_frames=32, step=7)  # 4 s at 8 fps
    ramp_video(root / "ego" / "uid1" / "1.mp4", num_frames=32, start=100, step=2)
    return root


@pytest.fixture(scope="module")
def tokenizer(bert_vocab):
    return load_tokenizer(bert_vocab, max_length=8)


def test_resolve_video_path_adds_extension_to_ids(tmp_path):
    assert resolve_video_path(tmp_path, "video7010") == tmp_path / "video7010.mp4"
    assert resolve_video_path(tmp_path, "clip", ".avi") == tmp_path / "clip.avi"
    assert resolve_video_path(tmp_path, "a/b.MP4") == tmp_path / "a" / "b.MP4"
    assert resolve_video_path(tmp_path, "x.v2") == tmp_path / "x.v2.mp4"


def test_video_text_middle_frames_are_the_right_frames(videos):
    records = [RetrievalRecord("up.mp4", ("a",)), RetrievalRecord("down", ("b", "c"))]
    dataset = VideoTextDataset(records, videos, num_frames=4, sample="middle", caption="first")
    first, second = dataset[0], dataset[1]
    assert first["video"].dtype == torch.uint8 and first["video"].shape == (4, 3, SIZE, SIZE)
    # middle sampling of 16 frames into 4: indices 1, 5, 9, 13 (lossy H.264: +-3 levels)
    expected = torch.tensor([20 + 8 * i for i in (1, 5, 9, 13)], dtype=torch.float32)
    assert torch.allclose(frame_values(first["video"]), expected, atol=3)
    assert torch.allclose(frame_values(second["video"]), 220 - expected, atol=3)
    assert (first["text"], second["text"], second["video_id"]) == ("a", "b", "down")
    assert first["skipped"] == [] and first["index"] == 0
    assert dataset.all_captions() == (["a", "b", "c"], [0, 1, 1])


def test_rand_sampling_follows_torch_seed_and_transform_applies(videos):
    records = [RetrievalRecord("up.mp4", ("a", "b", "c", "d"))]
    dataset = VideoTextDataset(
        records, videos, num_frames=4, sample="rand", transform=lambda clip: clip.float() / 255
    )
    torch.manual_seed(0)
    one = dataset[0]
    torch.manual_seed(0)
    two = dataset[0]
    assert one["video"].dtype == torch.float32 and one["video"].max() <= 1.0
    assert torch.equal(one["video"], two["video"]) and one["text"] == two["text"]
    values = frame_values(one["video"]) * 255
    assert torch.all(values[1:] > values[:-1])  # sorted indices, one per segment


def test_injected_reader_gets_window_seed_and_size(tmp_path):
    calls = []

    def stand_in(path, num_frames, **kwargs):
        calls.append((path, num_frames, kwargs))
        return torch.full((num_frames, 6, 8, 3), 7, dtype=torch.uint8), list(range(num_frames))

    records = [ego("uid9", 601.0, 603.0)]
    dataset = EgoClipDataset(
        records, tmp_path, num_frames=3, sample="rand", size=6, reader=stand_in
    )
    torch.manual_seed(0)
    sample = dataset[0]
    assert sample["video"].shape == (3, 3, 6, 8) and sample["video"].unique().tolist() == [7]
    path, num_frames, kwargs = calls[0]
    assert (path, num_frames) == (tmp_path / "uid9" / "1.mp4", 3)
    assert (kwargs["start"], kwargs["end"], kwargs["size"], kwargs["sample"]) == (
        1.0,
        3.0,
        6,
        "rand",
    )
    assert isinstance(kwargs["seed"], int) and "backend" not in kwargs


def test_on_error_skip_replaces_and_reports(videos):
    records = [
        RetrievalRecord("up.mp4", ("good",)),
        RetrievalRecord("zero.mp4", ("bad",)),
        RetrievalRecord("missing.mp4", ("gone",)),
    ]
    dataset = VideoTextDataset(records, videos, num_frames=2, caption="first", seed=7)
    sample = dataset[1]
    assert sample["index"] == 0 and sample["text"] == "good"  # the only good item
    assert sample["skipped"][0] == {"path": str(videos / "zero.mp4"), "reason": "zero bytes"}
    again = dataset[1]
    assert again["index"] == sample["index"] and again["skipped"] == sample["skipped"]
    assert len(dataset.skipped) == 2 * len(sample["skipped"])
    report = dataset.skip_report()
    assert report.count == len(dataset.skipped) and str(videos / "zero.mp4") in report.paths
    reasons = {item["reason"] for item in dataset[2]["skipped"]}
    assert "missing file" in reasons


def test_on_error_raise_and_retry_exhaustion(videos):
    records = [RetrievalRecord("zero.mp4", ("x",)), RetrievalRecord("text.mp4", ("y",))]
    strict = VideoTextDataset(records, videos, num_frames=2, on_error="raise")
    with pytest.raises(VideoDecodeError) as info:
        strict[0]
    assert info.value.path == str(videos / "zero.mp4") and info.value.reason == "zero bytes"
    lenient = VideoTextDataset(records, videos, num_frames=2, max_retries=3)
    with pytest.raises(VideoDecodeError, match="3 replacement items failed too"):
        lenient[1]
    with pytest.raises(ValueError, match="on_error"):
        VideoTextDataset(records, videos, num_frames=2, on_error="ignore")


def test_skipped_videos_cross_dataloader_workers(videos, tokenizer):
    records = [RetrievalRecord(name, ("hello world",)) for name in ("up.mp4", "zero.mp4")] * 2
    dataset = VideoTextDataset(records, videos, num_frames=2, seed=1)
    loader = DataLoader(
        dataset, batch_size=2, num_workers=1, collate_fn=VideoBatchCollator(tokenizer)
    )
    tally = SkippedVideos()
    batches = list(loader)
    for batch in batches:
        tally.update(batch)
    assert dataset.skipped == []  # the worker's copy counted, not this one
    # replacements are deterministic, so the main process sees the same skips
    expected = sum(len(dataset[i]["skipped"]) for i in range(len(dataset)))
    assert tally.count == expected >= 2 and set(tally.paths) == {str(videos / "zero.mp4")}
    assert tally.reasons[str(videos / "zero.mp4")] == "zero bytes"
    batch = batches[0]
    assert batch["video"].shape == (2, 2, 3, SIZE, SIZE)
    assert batch["text_ids"][0].tolist() == [101, 7592, 2088, 102, 0, 0, 0, 0]
    assert batch["text_mask"][0].tolist() == [1, 1, 1, 1, 0, 0, 0, 0]
    assert [records[i].video for i in batch["index"]] == ["up.mp4", "up.mp4"]


def test_collator_truncates_and_pads(tokenizer):
    collate = VideoBatchCollator(tokenizer, max_length=5)
    samples = [
        {"video": torch.zeros(2, 3, 4, 4), "text": "hello world hello world", "skipped": []},
        {
            "video": torch.ones(2, 3, 4, 4),
            "text": "hello",
            "skipped": [{"path": "p", "reason": "r"}],
        },
    ]
    batch = collate(samples)
    assert batch["text_ids"].tolist() == [[101, 7592, 2088, 7592, 102], [101, 7592, 102, 0, 0]]
    assert batch["video"].shape == (2, 2, 3, 4, 4) and batch["skipped"] == [
        {"path": "p", "reason": "r"}
    ]
    longest = VideoBatchCollator(tokenizer, padding="longest")(samples[1:])
    assert longest["text_ids"].tolist() == [[101, 7592, 102]]


def test_qa_dataset_labels_and_out_of_vocab(videos, tokenizer):
    records = [
        QARecord("up.mp4", "what color?", "gray", ("gray",), "q1", "static"),
        QARecord("down.mp4", "what moves?", "nothing", ("nothing",), "q2", "temporal"),
    ]
    vocab = {"white": 0, "gray": 1}
    dataset = QAVideoDataset(records, vocab, videos, num_frames=2)
    assert dataset.num_out_of_vocab == 1
    samples = [dataset[0], dataset[1]]
    assert [s["label"] for s in samples] == [1, -100]
    assert [s["type"] for s in samples] == ["static", "temporal"]
    batch = VideoBatchCollator(tokenizer)(samples)
    assert batch["label"].tolist() == [1, -100] and batch["question_id"] == ["q1", "q2"]
    assert batch["question_ids"].shape == (2, 8)
    dropped = QAVideoDataset(records, vocab, videos, num_frames=2, drop_out_of_vocab=True)
    assert len(dropped) == 1 and dropped.num_dropped == 1 and dropped.num_out_of_vocab == 0


def test_mc_dataset_collates_options(videos, tokenizer):
    records = [
        MCRecord("up", ("hello", "world", "hello world"), 2, "static"),
        MCRecord("down", ("a", "b", "c"), 0),
    ]
    dataset = MCVideoDataset(records, videos, num_frames=3)
    batch = VideoBatchCollator(tokenizer)([dataset[0], dataset[1]])
    assert batch["options_ids"].shape == (2, 3, 8)
    assert batch["options_ids"][0, 2, :4].tolist() == [101, 7592, 2088, 102]
    assert batch["answer"].tolist() == [2, 0] and batch["type"] == ["static", None]


def ego(uid, start, end, text="#C C opens the door", verb=(1,), noun=(2, 3)):
    return EgoClipRecord(
        video_uid=uid, clip_start=start, clip_end=end, clip_text=text, tag_verb=verb, tag_noun=noun
    )


def test_egoclip_window_chunks():
    assert egoclip_window(ego("u", 1.0, 2.0)) == ("u/0.mp4", 1.0, 2.0)
    assert egoclip_window(ego("u", 601.0, 603.5)) == ("u/1.mp4", 1.0, 3.5)
    assert egoclip_window(ego("u", 599.0, 601.0)) == ("u/0.mp4", 599.0, 600.0)  # cut at chunk end
    assert egoclip_window(ego("u", -0.5, 1.0)) == ("u/0.mp4", 0.0, 1.0)
    assert egoclip_window(ego("u", 5.0, 7.0), chunk_seconds=4.0) == ("u/1.mp4", 1.0, 3.0)


def test_egoclip_dataset_samples_inside_the_window(videos):
    records = [ego("uid1", 1.0, 2.0), ego("uid1", 3.0, 4.0)]
    dataset = EgoClipDataset(records, videos / "ego", num_frames=2, chunk_seconds=4.0)
    first, second = dataset[0], dataset[1]
    # window [1 s, 2 s) of chunk 0 = frames 8..15; 2 middle frames: 9 and 13
    assert torch.allclose(frame_values(first["video"]), torch.tensor([83.0, 111.0]), atol=3)
    assert first["tag_verb"] == (1,) and first["text"] == "#C C opens the door"
    # 3 s..4 s is in chunk 0 as well (chunk_seconds=4): frames 24..31 → 25 and 29
    assert torch.allclose(frame_values(second["video"]), torch.tensor([195.0, 223.0]), atol=3)
    assert multi_hot([(1,), (0, 2)], 3).tolist() == [[0, 1, 0], [1, 0, 1]]


def test_egomcq_dataset_stacks_choices(videos, tokenizer):
    choices = tuple(ego("uid1", float(i) % 4, float(i) % 4 + 0.5) for i in range(5))
    record = EgoMCQRecord("0", choices[2], choices, answer=2, types=1, intra=True)
    dataset = EgoMCQDataset([record], videos / "ego", num_frames=2, chunk_seconds=4.0)
    sample = dataset[0]
    assert sample["video"].shape == (5, 2, 3, SIZE, SIZE)
    batch = VideoBatchCollator(tokenizer)([sample])
    assert batch["video"].shape == (1, 5, 2, 3, SIZE, SIZE)
    assert batch["intra"].tolist() == [True] and batch["answer"].tolist() == [2]
