from dataclasses import dataclass

import pytest
import torch
from torch import nn

import leanvl
from leanvl.checkpoint import CONFIG_NAME, WEIGHTS_NAME, read_config
from leanvl.config import ConfigError
from leanvl.registry import register_family


@dataclass
class ToyConfig:
    width: int = 4
    tied: bool = True


@register_family("_test_toy", ToyConfig)
class Toy(nn.Module):
    def __init__(self, config: ToyConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(10, config.width)
        self.head = nn.Linear(config.width, 10, bias=False)
        if config.tied:  # shared storage: safetensors must cope
            self.head.weight = self.embed.weight


def test_save_load_roundtrip(tmp_path):
    model = Toy(ToyConfig(width=6))
    out = leanvl.save_model(model, tmp_path / "ckpt", extra={"answers": ["yes", "no"]})
    assert (out / CONFIG_NAME).is_file() and (out / WEIGHTS_NAME).is_file()
    loaded = leanvl.load(out)
    assert isinstance(loaded, Toy) and loaded.config == ToyConfig(width=6)
    assert loaded.checkpoint_extra == {"answers": ["yes", "no"]}
    assert loaded.head.weight is loaded.embed.weight
    torch.testing.assert_close(loaded.embed.weight, model.embed.weight, rtol=0, atol=0)


def test_save_replaces_existing_folder_atomically(tmp_path):
    leanvl.save_model(Toy(ToyConfig(width=4)), tmp_path / "ckpt")
    leanvl.save_model(Toy(ToyConfig(width=8)), tmp_path / "ckpt")
    assert leanvl.load(tmp_path / "ckpt").config.width == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temp folders left


def test_load_rejects_mismatched_or_bad_folders(tmp_path):
    leanvl.save_model(Toy(ToyConfig(width=4, tied=False)), tmp_path / "a")
    cfg = tmp_path / "a" / CONFIG_NAME
    cfg.write_text(cfg.read_text().replace('"width": 4', '"width": 5'))
    with pytest.raises(ValueError, match="does not match"):
        leanvl.load(tmp_path / "a")
    with pytest.raises(FileNotFoundError, match="not a leanvl checkpoint folder"):
        leanvl.load(tmp_path / "missing")
    cfg.write_text(
        '{"format": "leanvl-checkpoint/1", "family": "_test_toy", "config": {"widht": 4}}'
    )
    with pytest.raises(ConfigError, match="did you mean 'width'"):
        read_config(tmp_path / "a") and leanvl.load(tmp_path / "a")


def test_registry_errors():
    with pytest.raises(KeyError, match="unknown model"):
        leanvl.create_model("no_such_model")
