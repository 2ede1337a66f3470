from dataclasses import dataclass, field

import pytest

from leanvl.config import MISSING, ConfigError, load_config, parse_overrides


@dataclass
class Optim:
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.98)


@dataclass
class Recipe:
    name: str = MISSING
    max_steps: int = 10
    optim: Optim = field(default_factory=Optim)
    tags: list[str] = field(default_factory=list)


def test_yaml_then_overrides(tmp_path):
    cfg_file = tmp_path / "r.yaml"
    cfg_file.write_text("name: demo\nmax_steps: 5\noptim:\n  lr: 0.001\n")
    cfg = load_config(Recipe, cfg_file, overrides=["optim.lr=0.5", "tags=[a,b]"])
    assert isinstance(cfg, Recipe) and isinstance(cfg.optim, Optim)
    assert (cfg.name, cfg.max_steps, cfg.optim.lr, cfg.tags) == ("demo", 5, 0.5, ["a", "b"])


def test_unknown_key_suggests_nearest(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key 'optim.lrr'.*did you mean 'lr'"):
        load_config(Recipe, {"name": "x"}, overrides=["optim.lrr=1"])
    cfg_file = tmp_path / "r.yaml"
    cfg_file.write_text("name: x\nmax_step: 3\n")
    with pytest.raises(ConfigError, match=r"r.yaml.*'max_step'.*did you mean 'max_steps'"):
        load_config(Recipe, cfg_file)


def test_wrong_type_names_key_and_type():
    with pytest.raises(ConfigError, match=r"'max_steps' expects int.*'many'"):
        load_config(Recipe, {"name": "x"}, overrides=["max_steps=many"])


def test_missing_required_value():
    with pytest.raises(ConfigError, match=r"required value 'name' is missing"):
        load_config(Recipe)


def test_bad_files_and_overrides(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Recipe, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml.*not valid YAML"):
        load_config(Recipe, bad)
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["max_steps"])
