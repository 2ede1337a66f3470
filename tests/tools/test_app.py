"""Tests of the ``leanvl serve`` app: upload checks, the SViTT pruning figure, and an
end-to-end browser test in headless Chromium (Debian's ``chromium`` driven by Playwright with
the system executable; no browser download)."""

from __future__ import annotations

import json
import os
import shutil
import socket

import numpy as np
import pytest
import torch

import leanvl
from leanvl.tools.adapters import load_adapter
from leanvl.tools.app import UploadError, _answer_markdown, build_app, check_upload, pruning_figure
from leanvl.tools.index import build_index

from .conftest import MODEL, RECIPE

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_check_upload_refuses_type_and_size(tmp_path):
    clip = tmp_path / "a.mp4"
    clip.write_bytes(b"x" * 2000)
    assert check_upload(clip, 2000) == clip
    with pytest.raises(UploadError, match=r"'a.mp4' is 0.0 MB; the limit is 0 MB"):
        check_upload(clip, 1999)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(UploadError, match="'notes.txt' is not a video file"):
        check_upload(text, 10**9)
    with pytest.raises(UploadError, match="Upload a video first"):
        check_upload(None, 10**9)


def test_svitt_pruning_figure_marks_dropped_patches(synth_small, tmp_path):
    torch.manual_seed(0)
    folder = tmp_path / "svitt"
    leanvl.save_model(leanvl.create_model("svitt_tiny"), folder)
    adapter = load_adapter(folder)
    video = sorted((synth_small / "videos").glob("*.mp4"))[0]
    fig = pruning_figure(adapter, video, cell=112)
    kept = adapter.kept_patches(adapter.load_clip(video))
    assert fig.shape == (3 * 112, 4 * 112, 3) and fig.dtype == np.uint8
    # Row 0 shows every patch; in row 1 a patch is untouched iff it survived drop layer 1.
    grid, n = 7, 49
    survived = set(kept[0].tolist())
    for p in (0, 13, 48, n + 5, 3 * n + 20):
        f, q = divmod(p, n)
        r, c = divmod(q, grid)
        y, x = 112 + r * 16 + 8, f * 112 + c * 16 + 8
        original = fig[r * 16 + 8, f * 112 + c * 16 + 8]
        assert np.array_equal(fig[y, x], original) == (p in survived), p


def test_videopanda_model_answers_by_generation(synth_small, tmp_path):
    from leanvl.evaluation.videopanda_answer import VideoPandaAnswerer
    from leanvl.training.families.videopanda_text import build_word_tokenizer

    question = "what color is the square?"
    tok = build_word_tokenizer([question, "red blue green left right"])
    torch.manual_seed(3)
    model = leanvl.create_model(
        "videopanda_tiny", image_size=32, num_frames=4, llm={"vocab_size": len(tok)},
        extra={"tokenizer": tok.backend_tokenizer.to_str()},
    )  # fmt: skip
    folder = leanvl.save_model(model, tmp_path / "panda")
    adapter = load_adapter(folder)
    video = sorted((synth_small / "videos").glob("*.mp4"))[0]
    answerer = VideoPandaAnswerer(folder, model=adapter.model)
    assert answerer.model is adapter.model  # the app does not load the weights twice
    expected = VideoPandaAnswerer(folder).answer(video, question, max_new_tokens=6)
    shown = _answer_markdown(adapter, video, question, answerer, max_new_tokens=6)
    assert expected and shown == f"**{expected}**"
    with pytest.raises(UploadError, match="no question-answering head"):
        _answer_markdown(adapter, video, question)  # without the answerer: refused, named
    assert build_app(folder) is not None  # the Ask tab builds for a Video-Panda folder
    with pytest.raises(ValueError, match="cannot search an index"):
        build_app(folder, index=tmp_path / "any")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_browser_search_ask_and_refusals(synth_small, tmp_path):
    pytest.importorskip("gradio")
    sync_api = pytest.importorskip("playwright.sync_api")
    from leanvl.tools.app import serve

    answers = json.loads((synth_small / "annotations" / "qa_answers.json").read_text())
    torch.manual_seed(0)
    folder = tmp_path / "model"
    model = leanvl.create_model("allinone_tiny", **{**MODEL, "num_answers": len(answers)})
    leanvl.save_model(model, folder, extra={**RECIPE, "answers": answers})
    index = tmp_path / "index"
    build_index(synth_small / "videos", index, folder, workers=0)
    clip = synth_small / "videos" / "test_00001.mp4"
    adapter = load_adapter(folder)
    expected = adapter.answer(adapter.load_clip(clip), "what color is the diamond?")[0][0]
    big = tmp_path / "big.mp4"
    big.write_bytes(os.urandom(1_500_000))
    notes = tmp_path / "notes.txt"
    notes.write_text("not a video")

    port = _free_port()
    demo = serve(folder, index, port=port, max_upload_mb=1, block=False)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            page.locator("#query textarea").fill("a blue diamond comes into view")
            page.locator("#search-btn").click()
            page.wait_for_selector("#results img", timeout=60_000)
            assert page.locator("#results img").count() == 8
            assert "1. test_" in page.locator("#results").inner_text()
            page.wait_for_selector("#player video", timeout=90_000)  # the top hit's player

            page.get_by_role("tab", name="Ask").click()
            page.locator("#upload input[type=file]").set_input_files(str(clip))
            page.wait_for_selector("#upload >> text=test_00001.mp4", timeout=90_000)
            page.locator("#question textarea").fill("what color is the diamond?")
            page.locator("#ask-btn").click()
            page.wait_for_selector(f"#answer strong:text-is('{expected}')", timeout=60_000)

            refusals = {
                big: 'exceed the maximum allowed size of 1.0 Mb: "big.mp4"',
                notes: "Invalid file type: notes.txt",
            }
            for path, message in refusals.items():
                page.reload()
                page.get_by_role("tab", name="Ask").click()
                page.locator("#upload input[type=file]").set_input_files(str(path))
                page.wait_for_selector(f"text={message}", timeout=90_000)
            browser.close()
        assert any(demo.leanvl_tmp.rglob("test_00001.mp4"))  # uploads land in our temp folder
    finally:
        demo.close()
    assert not demo.leanvl_tmp.exists()
