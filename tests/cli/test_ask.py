"""``leanvl ask``: answers of Video-Panda (generation) and All-in-one (QA head) checkpoint
folders, streaming, and the errors for bad videos and folders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import leanvl.cli  # noqa: F401  (registers every command)
from leanvl.checkpoint import save_model
from leanvl.cli.app import app
from leanvl.evaluation.videopanda_answer import VideoPandaAnswerer, stream_generate
from leanvl.registry import create_model
from leanvl.tools.adapters import load_adapter
from leanvl.training.families.videopanda_text import build_word_tokenizer
from leanvl.video.writer import write_video

runner = CliRunner()
QUESTION = "what color is the square?"


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("ask") / "clip.mp4"
    frames = np.full((8, 32, 32, 3), 40, dtype=np.uint8)
    for t in range(8):
        frames[t, 8:16, 2 + 3 * t : 10 + 3 * t] = (220, 30, 30)
    return write_video(path, frames, fps=8)


@pytest.fixture(scope="module")
def panda(tmp_path_factory):
    tok = build_word_tokenizer([QUESTION, "red blue green left right"])
    torch.manual_seed(3)
    model = create_model(
        "videopanda_tiny",
        image_size=32,
        num_frames=4,
        llm={"vocab_size": len(tok)},
        extra={"tokenizer": tok.backend_tokenizer.to_str()},
    )
    return save_model(model, tmp_path_factory.mktemp("ask") / "panda")


def _ask(*args):
    return runner.invoke(app, ["ask", *map(str, args)])


def test_videopanda_answer_is_greedy_generation(panda, video):
    answerer = VideoPandaAnswerer(panda)
    frames = answerer.load_frames(video)
    assert frames.shape == (1, 4, 4, 32, 32)
    assert torch.equal(frames[0, :, 3], torch.ones(4, 32, 32))  # square clip: all valid
    ids = answerer.prompt_ids(QUESTION)
    assert int((ids == -200).sum()) == 4
    eos = answerer.tokenizer.eos_token_id
    gen = answerer.model.generate(ids, frames, max_new_tokens=6, eos_token_id=eos)
    streamed = list(stream_generate(answerer.model, ids, frames, 6, eos))
    assert streamed == gen.sequences[0, : len(streamed)].tolist()
    expected = gen.sequences[0].tolist()
    expected = expected[: expected.index(eos)] if eos in expected else expected
    text = answerer.tokenizer.decode(expected, skip_special_tokens=True).strip()
    assert text  # a random tiny model still says something
    assert answerer.answer(video, QUESTION, max_new_tokens=6) == text
    result = _ask(video, QUESTION, "--model", panda, "--max-new-tokens", 6)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == text
    streamed_cli = _ask(video, QUESTION, "--model", panda, "--max-new-tokens", 6, "--stream")
    assert streamed_cli.exit_code == 0 and streamed_cli.stdout.strip() == text


def test_sampling_is_seeded(panda, video):
    args = [video, QUESTION, "--model", panda, "--max-new-tokens", 5, "--sample"]
    a = _ask(*args, "--seed", 1, "--temperature", 5.0)
    b = _ask(*args, "--seed", 1, "--temperature", 5.0)
    assert a.exit_code == 0 and a.stdout == b.stdout


def test_allinone_qa_checkpoint_answers_with_its_head(tmp_path, video):
    torch.manual_seed(0)
    model = create_model("allinone_tiny", num_answers=3)
    folder = save_model(model, tmp_path / "aio", extra={"answers": ["red", "blue", "green"]})
    adapter = load_adapter(folder)
    best = adapter.answer(adapter.load_clip(video), QUESTION, top=1)[0][0]
    result = _ask(video, QUESTION, "--model", folder)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == best


def test_errors(panda, video, tmp_path):
    missing = _ask(tmp_path / "nope.mp4", QUESTION, "--model", panda)
    assert missing.exit_code == 1 and "no such video file" in missing.output
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    corrupt = _ask(bad, QUESTION, "--model", panda)
    assert corrupt.exit_code == 1 and "cannot read the video" in corrupt.output
    assert str(bad) in corrupt.output
    not_ckpt = _ask(video, QUESTION, "--model", tmp_path)
    assert not_ckpt.exit_code == 2 and "not a leanvl checkpoint folder" in not_ckpt.output
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    out = _ask(video, QUESTION, "--model", broken)
    assert out.exit_code == 1 and "corrupt checkpoint config" in out.output
    # weights that do not match the config
    meta = json.loads((panda / "config.json").read_text())
    meta["config"]["width"] = 32
    mismatch = tmp_path / "mismatch"
    mismatch.mkdir()
    (mismatch / "config.json").write_text(json.dumps(meta))
    (mismatch / "model.safetensors").write_bytes((panda / "model.safetensors").read_bytes())
    out = _ask(video, QUESTION, "--model", mismatch)
    assert out.exit_code == 1 and "cannot load the checkpoint" in out.output
    # a model without a QA head cannot answer
    torch.manual_seed(0)
    plain = save_model(create_model("allinone_tiny", num_answers=0), tmp_path / "plain")
    out = _ask(video, QUESTION, "--model", plain)
    assert out.exit_code == 2 and "has no QA head" in out.output
