"""``leanvl ask VIDEO "question" --model DIR``: answer a question about a video file.

A Video-Panda checkpoint folder (Yi et al., CVPR 2025) answers by generation (greedy unless
``--sample``; ``--stream`` prints the answer as it is decoded); an All-in-one checkpoint with a
QA head (Wang et al., CVPR 2023) answers with its answer classifier (the most probable answer of
its vocabulary). Heavy imports happen inside the command, so ``leanvl --help`` stays fast.

Exit codes: 0 ok, 1 the video or the checkpoint cannot be read, 2 usage error (a folder that is
not a leanvl checkpoint, a model that cannot answer questions).
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console

from leanvl.cli.app import app, fail

_console = Console(stderr=True)


def _fail(message: str, code: int) -> None:
    fail(_console, message, code)


def _family(model: Path) -> str:
    from leanvl.checkpoint import read_config
    from leanvl.config import ConfigError

    if not model.exists():
        _fail(f"--model '{model}': no such folder", 2)
    if not model.is_dir():
        _fail(f"--model '{model}': not a folder (expected a leanvl checkpoint folder)", 2)
    try:
        return read_config(model)["family"]
    except FileNotFoundError as exc:
        _fail(f"--model {exc} (config.json + model.safetensors)", 2)
    except ConfigError as exc:
        _fail(f"--model: corrupt checkpoint config: {exc}", 1)
    raise AssertionError("unreachable")


@app.command("ask")
def ask_command(
    video: Path = typer.Argument(..., help="Video file."),
    question: str = typer.Argument(..., help='The question, e.g. "what color is the square?"'),
    model: Path = typer.Option(..., "--model", "-m", help="leanvl checkpoint folder."),
    stream: bool = typer.Option(False, "--stream", help="Print the answer as it is generated."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", min=1, help="Answer length cap."),
    sample: bool = typer.Option(False, "--sample", help="Sample instead of greedy decoding."),
    temperature: float = typer.Option(1.0, "--temperature", min=0.0, help="With --sample."),
    top_p: float = typer.Option(1.0, "--top-p", min=0.0, max=1.0, help="With --sample."),
    seed: int = typer.Option(0, "--seed", help="Random seed of --sample."),
    tokenizer: Path = typer.Option(
        None, "--tokenizer", help="Tokenizer folder for checkpoints that store none."
    ),
) -> None:
    """Answer QUESTION about VIDEO with a Video-Panda (generation) or All-in-one QA model."""
    family = _family(model)
    if not video.exists():
        _fail(f"'{video}': no such video file", 1)
    import torch

    from leanvl.video import VideoDecodeError

    try:
        if family == "videopanda":
            from leanvl.evaluation.videopanda_answer import VideoPandaAnswerer

            try:
                answerer = VideoPandaAnswerer(model, tokenizer)
            except (ValueError, OSError, RuntimeError) as exc:
                _fail(f"--model '{model}': cannot load the checkpoint: {exc}", 1)
            sampling = {}
            if sample:
                sampling = {
                    "do_sample": True,
                    "temperature": temperature,
                    "top_p": top_p,
                    "generator": torch.Generator().manual_seed(seed),
                }
            pieces = answerer.stream(video, question, max_new_tokens, **sampling)
            if stream:
                started = False
                for piece in pieces:
                    if not started:
                        piece, started = piece.lstrip(), True
                    sys.stdout.write(piece)
                    sys.stdout.flush()
                sys.stdout.write("\n")
            else:
                print("".join(pieces).strip())
            return
        if family == "allinone":
            from leanvl.tools.adapters import load_adapter

            try:
                adapter = load_adapter(model)
            except (ValueError, OSError, RuntimeError) as exc:
                _fail(f"--model '{model}': cannot load the checkpoint: {exc}", 1)
            try:
                best = adapter.answer(adapter.load_clip(video), question, top=1)
            except ValueError as exc:
                if isinstance(exc, VideoDecodeError):
                    raise
                _fail(str(exc), 2)
            print(best[0][0])
            return
    except VideoDecodeError as exc:
        _fail(f"cannot read the video: {exc}", 1)
    _fail(
        f"--model '{model}': a {family} checkpoint cannot answer questions (needs a videopanda "
        "checkpoint, or an allinone checkpoint with a QA head)",
        2,
    )
