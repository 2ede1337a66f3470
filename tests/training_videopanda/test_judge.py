"""The GPT-judge client and aggregation against a local OpenAI-compatible server (loopback,
no network)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from leanvl.evaluation.judge import (
    JudgeClient,
    JudgeError,
    JudgeVerdict,
    aggregate,
    judge_predictions,
    parse_verdict,
    read_predictions,
)


class _Judge(BaseHTTPRequestHandler):
    """Answers like a judge model: yes/5 when the predicted answer equals the correct one,
    no/1 otherwise; the first request for a question containing "flaky" gets prose without
    a dict; a question containing "broken" always gets HTTP 500."""

    requests: list[dict] = []
    seen: set[str] = set()

    def do_POST(self):  # noqa: N802 (http.server API)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(
            {"path": self.path, "auth": self.headers["Authorization"], **body}
        )
        user = body["messages"][1]["content"]
        fields = dict(line.split(": ", 1) for line in user.splitlines()[:3])
        if "broken" in fields["Question"]:
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b"server exploded")
            return
        if "flaky" in fields["Question"] and fields["Question"] not in self.seen:
            self.seen.add(fields["Question"])
            text = "I think the answer is right."
        elif fields["Correct answer"] == fields["Predicted answer"]:
            text = "{'pred': 'yes', 'score': 5}"
        else:
            text = "```\n{'pred': 'no', 'score': 1.7}\n```"
        reply = {
            "model": "judge-test-0613",
            "system_fingerprint": "fp_local",
            "choices": [{"message": {"role": "assistant", "content": text}}],
        }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture()
def server():
    _Judge.requests, _Judge.seen = [], set()
    httpd = HTTPServer(("127.0.0.1", 0), _Judge)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def test_parse_verdict():
    assert parse_verdict("{'pred': 'yes', 'score': 4}") == ("yes", 4)
    assert parse_verdict('Sure: {"pred": "no", "score": "3"}') == ("no", 3)
    assert parse_verdict("{'pred': 'no', 'score': 2.9}") == ("no", 2)  # int() truncates
    for bad in ("no dict here", "{'pred': 'yes'}", "{'pred': 'yes', 'score': 'high'}", "{oops}"):
        with pytest.raises(ValueError):
            parse_verdict(bad)


def test_aggregate_follows_the_official_rules():
    verdicts = [
        JudgeVerdict("a", "yes", 5),
        JudgeVerdict("b", "No.", 1),
        JudgeVerdict("c", "Yes, but no", 3),  # "yes" is checked before "no"
        JudgeVerdict("d", None, None, error="unparsable"),  # counts in the score only
    ]
    out = aggregate(verdicts)
    assert (out["yes"], out["no"], out["n"], out["failed"]) == (2, 1, 4, 1)
    assert out["accuracy"] == pytest.approx(2 / 3)
    assert out["score"] == pytest.approx((5 + 1 + 3) / 4)


def test_judge_against_a_local_server(server, tmp_path, monkeypatch):
    monkeypatch.setenv("LEANVL_JUDGE_URL", server)
    monkeypatch.setenv("LEANVL_JUDGE_KEY", "sk-test")
    monkeypatch.delenv("LEANVL_JUDGE_MODEL", raising=False)
    preds = tmp_path / "predictions_test.jsonl"
    rows = [
        {"id": "q1", "question": "what color?", "answer": "red", "pred": "red"},
        {"id": "q2", "question": "how many?", "answer": "two", "pred": "three"},
        {"id": "q3", "question": "flaky: which way?", "answer": "left", "pred": "left"},
        {"id": "q4", "question": "broken?", "answer": "yes", "pred": "yes"},
    ]
    preds.write_text("".join(json.dumps(r) + "\n" for r in rows))
    client = JudgeClient.from_env()
    assert client.model == "gpt-3.5-turbo" and client.key == "sk-test"
    result = judge_predictions(
        read_predictions(preds), client, tmp_path / "cache", max_retries=1, backoff=0.0
    )
    assert (result["yes"], result["no"], result["n"], result["failed"]) == (2, 1, 4, 1)
    assert result["accuracy"] == pytest.approx(2 / 3)
    assert result["score"] == pytest.approx((5 + 1 + 5 + 0) / 4)
    assert result["judge"]["model_requested"] == "gpt-3.5-turbo"
    assert result["judge"]["models_reported"] == ["judge-test-0613"]
    assert result["judge"]["system_fingerprints"] == ["fp_local"]
    items = {i["id"]: i for i in result["items"]}
    assert items["q3"]["attempts"] == 2 and items["q3"]["pred"] == "yes"
    assert items["q4"]["attempts"] == 2 and "HTTP 500: server exploded" in items["q4"]["error"]
    first = _Judge.requests[0]
    assert first["path"] == "/v1/chat/completions" and first["auth"] == "Bearer sk-test"
    assert first["model"] == "gpt-3.5-turbo" and first["temperature"] == 0.0
    system, user = first["messages"]
    assert system["role"] == "system" and "synonyms" in system["content"]
    assert "Question: what color?\nCorrect answer: red\nPredicted answer: red" in user["content"]
    # a second run is served from the cache, except the item that failed
    count = len(_Judge.requests)
    again = judge_predictions(
        read_predictions(preds), client, tmp_path / "cache", max_retries=0, backoff=0.0
    )
    assert len(_Judge.requests) == count + 1
    assert again["accuracy"] == result["accuracy"] and again["score"] == result["score"]


def test_missing_endpoint_and_bad_input(tmp_path, monkeypatch):
    monkeypatch.delenv("LEANVL_JUDGE_URL", raising=False)
    with pytest.raises(JudgeError, match="LEANVL_JUDGE_URL"):
        JudgeClient.from_env()
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"id": 1, "question": "q", "answer": "a", "pred": "a"}\n{"id": 2}\n')
    with pytest.raises(ValueError, match=r"p.jsonl' line 2: missing field\(s\)"):
        read_predictions(bad)
    client = JudgeClient(url="http://127.0.0.1:9", timeout=2.0)  # discard port: refused
    with pytest.raises(JudgeError, match="request failed"):
        client.chat([{"role": "user", "content": "hi"}])


def test_command_line_writes_results(server, tmp_path, monkeypatch, capsys):
    from leanvl.evaluation.judge import _main

    monkeypatch.setenv("LEANVL_JUDGE_URL", server)
    monkeypatch.setenv("LEANVL_JUDGE_MODEL", "judge-test")
    preds = tmp_path / "predictions_test.jsonl"
    rows = [
        {"id": "a", "question": "q1", "answer": "red", "pred": "red"},
        {"id": "b", "question": "q2", "answer": "two", "pred": "one"},
    ]
    preds.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert _main([str(preds)]) == 0
    result = json.loads((tmp_path / "predictions_test.judge.json").read_text())
    assert (result["accuracy"], result["score"]) == (0.5, 3.0)
    assert result["judge"]["model_requested"] == "judge-test"
    assert len(list((tmp_path / "predictions_test.judge").iterdir())) == 2
    assert "accuracy 0.5000  score 3.000" in capsys.readouterr().out
    monkeypatch.delenv("LEANVL_JUDGE_URL")
    assert _main([str(preds)]) == 1
