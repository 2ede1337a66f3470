"""LLM-judged open-ended video QA: the GPT-judge protocol of Video-ChatGPT / Video-LLaVA, as
Video-Panda reports it (Yi et al., CVPR 2025, arXiv 2412.18609, Table 1; spec
``videopanda.md`` §6.1).

For every (question, correct answer, predicted answer) the judge model receives a system
message that makes it an evaluator of answer correctness (meaningful match, synonyms and
paraphrases accepted) and a user message with the three texts, and must reply with a Python
dict string ``{'pred': 'yes' | 'no', 'score': <int 0..5>}``. Replies are parsed with
``ast.literal_eval``; an unusable reply or a failed request is retried (``max_retries``), one
JSON per item is cached on disk so an interrupted run resumes without paying twice.

Aggregation (as the official ``eval_video_qa.py``): **accuracy** = #yes / (#yes + #no), where an
item is "yes" when its lower-cased ``pred`` contains ``yes`` (checked before ``no``);
**score** = sum of ``int(score)`` / number of items (``int`` truncates; items whose reply never
parsed count in the denominator with score 0).

The client speaks the OpenAI-compatible ``POST {url}/chat/completions`` API with the standard
library only. Endpoint, key and model come from arguments or the environment:
``LEANVL_JUDGE_URL`` (e.g. ``https://api.openai.com/v1``), ``LEANVL_JUDGE_KEY`` (falls back to
``OPENAI_API_KEY``), ``LEANVL_JUDGE_MODEL`` (default ``gpt-3.5-turbo``, the paper's judge). The
results record the requested model and every model name / ``system_fingerprint`` the server
reported, because judge versions change the numbers (the paper re-ran TGIF-QA for that reason).

Command line: ``python -m leanvl.evaluation.judge PREDICTIONS.jsonl [--out RESULTS.json]
[--cache DIR]``; predictions are ``{"id", "question", "answer", "pred"}`` lines (what
``leanvl train``/``eval`` of a Video-Panda recipe writes to ``predictions_<split>.jsonl``).
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leanvl.checkpoint import atomic_write_text

__all__ = [
    "DEFAULT_MODEL",
    "JudgeClient",
    "JudgeError",
    "JudgeVerdict",
    "aggregate",
    "judge_messages",
    "judge_predictions",
    "parse_verdict",
    "read_predictions",
]

DEFAULT_MODEL = "gpt-3.5-turbo"

_SYSTEM = (
    "You judge answers to questions about videos. Given a question, its correct answer and a "
    "predicted answer, decide whether the prediction is correct. Judge the meaning, not the "
    "wording: synonyms and paraphrases of the correct answer count as correct, while an answer "
    "that contradicts it or misses its point does not. Also rate how well the prediction "
    "matches the correct answer with an integer from 0 (no match) to 5 (perfect match)."
)
_USER = (
    "Question: {question}\n"
    "Correct answer: {answer}\n"
    "Predicted answer: {pred}\n\n"
    "Reply only with a Python dictionary string of the form {{'pred': 'yes', 'score': 4}}: "
    "'pred' is 'yes' if the predicted answer is correct and 'no' otherwise, 'score' is the "
    "integer match rating from 0 to 5. Write nothing else, no explanation."
)


class JudgeError(RuntimeError):
    """The judge endpoint cannot be used (no URL, HTTP error with its status and body)."""


@dataclass
class JudgeVerdict:
    """The judged result of one item.

    Attributes:
        id: the item's id.
        pred: the judge's ``pred`` string (None when no reply parsed).
        score: ``int(score)`` (None when no reply parsed).
        raw: the last reply text.
        model: the model name the server reported for the reply.
        attempts: requests made.
        error: why the item failed (None when it parsed).
    """

    id: str
    pred: str | None
    score: int | None
    raw: str | None = None
    model: str | None = None
    fingerprint: str | None = None
    attempts: int = 0
    error: str | None = None


def judge_messages(question: str, answer: str, pred: str) -> list[dict[str, str]]:
    """The chat messages of one item (system: the evaluator role; user: the three texts)."""
    return [
        {"role": "system", "content": _SYSTEM},
        {"role": "user", "content": _USER.format(question=question, answer=answer, pred=pred)},
    ]


def parse_verdict(text: str) -> tuple[str, int]:
    """``(pred, int(score))`` from a reply such as ``"{'pred': 'yes', 'score': 4}"``.

    Surrounding prose or a code fence is tolerated: the first ``{...}`` is parsed with
    ``ast.literal_eval`` (never ``eval``).

    Raises:
        ValueError: no dict, a dict without ``pred`` / ``score``, or a non-numeric score.
    """
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise ValueError(f"no dictionary in the reply {text[:200]!r}")
    try:
        value = ast.literal_eval(text[start : end + 1])
    except (ValueError, SyntaxError) as exc:
        raise ValueError(f"reply is not a Python literal: {text[:200]!r}") from exc
    if not isinstance(value, dict) or "pred" not in value or "score" not in value:
        raise ValueError(f"reply lacks 'pred' or 'score': {text[:200]!r}")
    try:
        score = int(value["score"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"score {value['score']!r} is not a number") from exc
    return str(value["pred"]), score


@dataclass
class JudgeClient:
    """A minimal OpenAI-compatible chat-completions client.

    Attributes:
        url: base URL (``.../v1``); ``/chat/completions`` is appended.
        key: bearer token (may be empty for local servers).
        model: judge model name.
        temperature: sampling temperature (0 = as deterministic as the server allows).
        timeout: seconds per request.
    """

    url: str
    key: str = ""
    model: str = DEFAULT_MODEL
    temperature: float = 0.0
    timeout: float = 60.0
    extra_body: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls, url: str | None = None, key: str | None = None, model: str | None = None):
        """A client from arguments, else ``LEANVL_JUDGE_URL`` / ``LEANVL_JUDGE_KEY`` (or
        ``OPENAI_API_KEY``) / ``LEANVL_JUDGE_MODEL``.

        Raises:
            JudgeError: no URL anywhere.
        """
        url = url or os.environ.get("LEANVL_JUDGE_URL")
        if not url:
            raise JudgeError(
                "no judge endpoint: set LEANVL_JUDGE_URL (e.g. https://api.openai.com/v1) "
                "and LEANVL_JUDGE_KEY"
            )
        key = key if key is not None else os.environ.get("LEANVL_JUDGE_KEY")
        key = key if key is not None else os.environ.get("OPENAI_API_KEY", "")
        model = model or os.environ.get("LEANVL_JUDGE_MODEL") or DEFAULT_MODEL
        return cls(url=url, key=key, model=model)

    def chat(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        """One completion: ``{"text", "model", "fingerprint"}``.

        Raises:
            JudgeError: HTTP error status (with the body's start), unreachable server, or a
                response without ``choices[0].message.content``.
        """
        body = {"model": self.model, "messages": messages, "temperature": self.temperature}
        body.update(self.extra_body)
        request = urllib.request.Request(
            self.url.rstrip("/") + "/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.key}"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:300]
            raise JudgeError(f"{self.url}: HTTP {exc.code}: {detail}") from exc
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise JudgeError(f"{self.url}: request failed ({exc})") from exc
        except json.JSONDecodeError as exc:
            raise JudgeError(f"{self.url}: response is not JSON ({exc})") from exc
        try:
            text = payload["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise JudgeError(f"{self.url}: no choices[0].message.content in the response") from exc
        return {
            "text": text,
            "model": payload.get("model"),
            "fingerprint": payload.get("system_fingerprint"),
        }


def _cache_name(item: dict[str, Any], model: str) -> str:
    key = json.dumps([model, item["question"], item["answer"], item["pred"]])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(item["id"]))[:80]
    return f"{safe}-{digest}.json"


def _judge_one(
    client: JudgeClient,
    item: dict[str, Any],
    max_retries: int,
    backoff: float,
    cache: Path | None,
) -> JudgeVerdict:
    file = cache / _cache_name(item, client.model) if cache else None
    if file is not None and file.is_file():
        return JudgeVerdict(**json.loads(file.read_text(encoding="utf-8")))
    messages = judge_messages(item["question"], item["answer"], item["pred"])
    verdict = JudgeVerdict(str(item["id"]), None, None)
    for attempt in range(1, max_retries + 2):
        verdict.attempts = attempt
        try:
            reply = client.chat(messages)
            verdict.raw, verdict.model = reply["text"], reply["model"]
            verdict.fingerprint = reply["fingerprint"]
            verdict.pred, verdict.score = parse_verdict(reply["text"])
            verdict.error = None
            break
        except (JudgeError, ValueError) as exc:
            verdict.error = str(exc)
            if attempt <= max_retries:
                time.sleep(backoff * attempt)
    if file is not None and verdict.error is None:
        atomic_write_text(file, json.dumps(verdict.__dict__) + "\n")
    return verdict


def aggregate(verdicts: Sequence[JudgeVerdict]) -> dict[str, Any]:
    """Accuracy (#yes / (#yes + #no)) and mean score over all items (failures score 0)."""
    yes = no = 0
    total = 0
    for v in verdicts:
        if v.pred is not None:
            p = v.pred.lower()
            if "yes" in p:
                yes += 1
            elif "no" in p:
                no += 1
        total += v.score or 0
    n = len(verdicts)
    return {
        "accuracy": yes / (yes + no) if yes + no else 0.0,
        "score": total / n if n else 0.0,
        "yes": yes,
        "no": no,
        "n": n,
        "failed": sum(1 for v in verdicts if v.error is not None),
    }


def read_predictions(path: str | Path) -> list[dict[str, Any]]:
    """Prediction lines ``{"id", "question", "answer", "pred"}`` (JSONL, or a JSON list).

    Raises:
        ValueError: a line that is not JSON or lacks a field (file and line named).
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        rows = json.loads(text)
        numbered = list(enumerate(rows, 1))
    else:
        numbered = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    numbered.append((number, json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"'{path}' line {number}: not JSON ({exc})") from exc
    items = []
    for number, row in numbered:
        missing = [
            k for k in ("question", "answer", "pred") if not isinstance(row, dict) or k not in row
        ]
        if missing:
            raise ValueError(f"'{path}' line {number}: missing field(s) {missing}")
        items.append({**row, "id": row.get("id", number)})
    return items


def judge_predictions(
    items: Sequence[dict[str, Any]],
    client: JudgeClient,
    cache_dir: str | Path | None = None,
    max_retries: int = 3,
    backoff: float = 1.0,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Judge every prediction and aggregate.

    Args:
        items: ``{"id", "question", "answer", "pred"}`` dicts.
        client: the :class:`JudgeClient`.
        cache_dir: one JSON per judged item (reused when the item and model are unchanged).
        max_retries: extra attempts per item after a failed request or unparsable reply.
        backoff: seconds times the attempt number slept between attempts.
        workers: concurrent requests.
        progress: called with (done, total).

    Returns:
        The :func:`aggregate` numbers plus ``judge`` (url, requested model, the model names and
        fingerprints the server reported, protocol) and ``items`` (one verdict per item).
    """
    cache = Path(cache_dir) if cache_dir else None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    verdicts: list[JudgeVerdict | None] = [None] * len(items)

    def run(i: int) -> None:
        verdicts[i] = _judge_one(client, items[i], max_retries, backoff, cache)

    done = 0
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for _ in pool.map(run, range(len(items))):
            done += 1
            if progress is not None:
                progress(done, len(items))
    final = [v for v in verdicts if v is not None]
    result = aggregate(final)
    result["judge"] = {
        "url": client.url,
        "model_requested": client.model,
        "models_reported": sorted({v.model for v in final if v.model}),
        "system_fingerprints": sorted({v.fingerprint for v in final if v.fingerprint}),
        "temperature": client.temperature,
        "protocol": "video-chatgpt/video-llava open-ended QA judge (yes/no + 0-5 score)",
    }
    result["items"] = [
        {**{k: items[i].get(k) for k in ("id", "question", "answer", "pred")}, **v.__dict__}
        for i, v in enumerate(final)
    ]
    return result


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m leanvl.evaluation.judge")
    parser.add_argument("predictions", help="JSONL of {id, question, answer, pred}")
    parser.add_argument("--out", help="results JSON (default: PREDICTIONS.judge.json)")
    parser.add_argument("--cache", help="per-item cache folder (default: PREDICTIONS.judge/)")
    parser.add_argument("--url", help="endpoint base URL (default $LEANVL_JUDGE_URL)")
    parser.add_argument(
        "--model", help="judge model (default $LEANVL_JUDGE_MODEL or gpt-3.5-turbo)"
    )
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--retries", type=int, default=3)
    args = parser.parse_args(argv)
    try:
        client = JudgeClient.from_env(args.url, None, args.model)
        items = read_predictions(args.predictions)
    except (JudgeError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, JudgeError) else 2
    pred = Path(args.predictions)
    out = Path(args.out) if args.out else pred.with_suffix(".judge.json")
    cache = Path(args.cache) if args.cache else pred.with_suffix(".judge")
    result = judge_predictions(items, client, cache, args.retries, workers=args.workers)
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    print(
        f"accuracy {result['accuracy']:.4f}  score {result['score']:.3f}  "
        f"(n={result['n']}, failed={result['failed']}, judge={result['judge']['models_reported']})"
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
