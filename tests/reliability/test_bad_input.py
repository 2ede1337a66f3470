"""Issue 11, items 3 and 4: bad annotation files and bad configs through ``leanvl train``.

Each case must end with a one-line error naming the file, the line or index and the field
(annotations) or the key (configs), exit code 1 (bad data) or 2 (bad config), no traceback, and
before any training: no checkpoint, no exported model.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.reliability.helpers import copy_dataset, recipe, run_cli, write_recipe

pytestmark = pytest.mark.faults


@pytest.fixture(scope="module")
def data(synth, tmp_path_factory) -> Path:
    """A private copy of the synthetic set whose annotation folder the tests add files to."""
    return copy_dataset(synth, tmp_path_factory.mktemp("ann") / "data")


def _entries(data: Path, name: str) -> list[dict]:
    return json.loads((data / "annotations" / name).read_text())


def _train_with(data, tmp_path, capsys, task: str, content: bytes | str, name: str):
    """Write ``content`` as the training file ``name`` and run ``leanvl train`` on it."""
    ann = data / "annotations" / name
    ann.write_bytes(content if isinstance(content, bytes) else content.encode())
    run = tmp_path / "run"
    cfg = recipe(data, run, task, data={"train_file": f"annotations/{name}"})
    code, _, err = run_cli(["train", write_recipe(tmp_path / "r.yaml", cfg)], capsys)
    assert "Traceback" not in err
    assert not (run / "checkpoints").exists() and not (run / "model").exists()
    return code, " ".join(err.split()), str(ann)


def test_missing_field(data, tmp_path, capsys):
    entries = _entries(data, "ret_train.json")
    del entries[7]["caption"]
    code, err, path = _train_with(
        data, tmp_path, capsys, "pretrain", json.dumps(entries), "missing.json"
    )
    assert code == 1
    assert f"'{path}', index 7, field 'caption'" in err and "missing" in err


def test_wrong_type(data, tmp_path, capsys):
    entries = _entries(data, "qa_train.json")
    entries[12]["question"] = 42
    code, err, path = _train_with(data, tmp_path, capsys, "qa", json.dumps(entries), "type.json")
    assert code == 1
    assert f"'{path}', index 12, field 'question'" in err and "int" in err


def test_non_utf8_bytes(data, tmp_path, capsys):
    text = json.dumps(_entries(data, "ret_train.json"), indent=1).encode()
    at = text.index(b"caption", len(text) // 2)
    line = text[:at].count(b"\n") + 1
    bad = text[:at] + b"\xff\xfe" + text[at:]
    code, err, path = _train_with(data, tmp_path, capsys, "pretrain", bad, "latin.json")
    assert code == 1
    assert f"'{path}'" in err and "UTF-8" in err and f"line {line}" in err


def test_empty_file(data, tmp_path, capsys):
    code, err, path = _train_with(data, tmp_path, capsys, "pretrain", b"", "empty.json")
    assert code == 1
    assert f"'{path}'" in err and "empty" in err


def test_duplicate_ids(data, tmp_path, capsys):
    entries = _entries(data, "qa_train.json")
    entries[30]["question_id"] = entries[3]["question_id"]
    code, err, path = _train_with(data, tmp_path, capsys, "qa", json.dumps(entries), "dup.json")
    assert code == 1
    assert f"'{path}', index 30, field 'question_id'" in err
    assert "duplicate" in err and "index 3" in err


# ------------------------------------------------------------------------------------ configs
@pytest.fixture()
def config(data, tmp_path) -> Path:
    return write_recipe(tmp_path / "r.yaml", recipe(data, tmp_path / "run"))


def test_config_unknown_key_suggests_the_nearest(config, tmp_path, capsys):
    code, _, err = run_cli(["train", config, "optim.lrr=0.1"], capsys)
    assert code == 2 and "Traceback" not in err
    assert "unknown key 'optim.lrr'" in err and "did you mean 'lr'" in err
    assert not (tmp_path / "run").exists()


def test_config_unknown_key_in_the_file(data, tmp_path, capsys):
    cfg = recipe(data, tmp_path / "run", trainer={"max_step": 5})
    code, _, err = run_cli(["train", write_recipe(tmp_path / "x.yaml", cfg)], capsys)
    assert code == 2 and "trainer.max_step" in err and "did you mean 'max_steps'" in err
    assert not (tmp_path / "run").exists()


def test_config_wrong_type(config, tmp_path, capsys):
    code, _, err = run_cli(["train", config, "trainer.max_steps=many"], capsys)
    assert code == 2 and "Traceback" not in err
    assert "trainer.max_steps" in err and "many" in err
    assert not (tmp_path / "run").exists()


def test_config_missing_required_value(data, tmp_path, capsys):
    cfg = recipe(data, tmp_path / "run")
    del cfg["data"]["root"]
    code, _, err = run_cli(["train", write_recipe(tmp_path / "x.yaml", cfg)], capsys)
    assert code == 2 and "Traceback" not in err
    assert "data.root" in err
    assert not (tmp_path / "run").exists()


def test_config_bad_value(config, tmp_path, capsys):
    code, _, err = run_cli(["train", config, "data.on_error=ignore"], capsys)
    assert code == 2 and "data.on_error" in err and "'ignore'" in err
    assert not (tmp_path / "run").exists()
