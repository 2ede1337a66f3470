"""Typed configuration: YAML files and ``key=value`` overrides merged into ``@dataclass`` schemas.

Every config in leanvl (model configs, training recipes) is a dataclass. Users write YAML and
override fields on the command line (``trainer.max_steps=100``); this module turns both into a
typed instance and fails early, naming the offending key:

* an unknown key names the key, where it appeared, and the nearest valid key;
* a value of the wrong type names the key, the value and the expected type;
* a required field (``MISSING``) left unset names the field.

OmegaConf does the typed merge; the unknown-key walk is ours so that the message can suggest a
correction (OmegaConf's own message does not).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import (
    ConfigKeyError,
    MissingMandatoryValue,
    OmegaConfBaseException,
    ValidationError,
)

__all__ = [
    "MISSING",
    "ConfigError",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "parse_overrides",
]

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration problem, raised before any heavy work starts."""


def _field_types(schema: type) -> dict[str, Any]:
    hints = typing.get_type_hints(schema)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(schema)}


def _dataclass_of(tp: Any) -> type | None:
    """The dataclass inside ``tp`` (``Foo``, ``Foo | None``, ``Optional[Foo]``), if any."""
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return tp
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            found = _dataclass_of(arg)
            if found is not None:
                return found
    return None


def suggest(name: str, valid: Sequence[str]) -> str:
    """A ``"; did you mean 'x'?"`` suffix for a misspelt ``name``, or ``""``."""
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.5)
    return f"; did you mean '{close[0]}'?" if close else ""


def _check_keys(schema: type, data: Mapping[str, Any], where: str, prefix: str = "") -> None:
    """Raise ConfigError for the first key of ``data`` that ``schema`` does not declare."""
    fields = _field_types(schema)
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in fields:
            raise ConfigError(
                f"{where}: unknown key '{full}'{suggest(str(key), list(fields))} "
                f"(valid keys here: {', '.join(sorted(fields))})"
            )
        sub = _dataclass_of(fields[key])
        if sub is not None and isinstance(value, Mapping):
            _check_keys(sub, value, where, prefix=f"{full}.")


def _type_name(schema: type, dotted: str) -> str:
    tp: Any = schema
    for part in dotted.split("."):
        cls = _dataclass_of(tp)
        if cls is None:
            return "?"
        tp = _field_types(cls).get(part, Any)
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _translate(exc: OmegaConfBaseException, schema: type, where: str) -> ConfigError:
    key = getattr(exc, "full_key", None) or getattr(exc, "key", None) or "?"
    if isinstance(exc, MissingMandatoryValue):
        return ConfigError(f"{where}: required value '{key}' is missing; set {key}=...")
    if isinstance(exc, ValidationError):
        value = getattr(exc, "value", None)
        shown = f" {value!r}" if value is not None else ""
        return ConfigError(
            f"{where}: '{key}' expects {_type_name(schema, str(key))}, got{shown} "
            f"({str(exc).splitlines()[0]})"
        )
    if isinstance(exc, ConfigKeyError):
        return ConfigError(f"{where}: unknown key '{key}'")
    return ConfigError(f"{where}: {str(exc).splitlines()[0]}")


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """Parse ``["a.b=1", "c=x"]`` into a nested dict, with YAML typing of the values."""
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"override '{item}' is not of the form key=value")
    try:
        return OmegaConf.to_container(OmegaConf.from_dotlist(list(overrides)))  # type: ignore[return-value]
    except OmegaConfBaseException as exc:
        raise ConfigError(f"bad override: {exc}") from exc


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist")
    try:
        node = OmegaConf.load(path)
    except Exception as exc:  # yaml.YAMLError and OSError alike: name the file
        raise ConfigError(f"config file '{path}' is not valid YAML: {exc}") from exc
    data = OmegaConf.to_container(node)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping at the top level")
    return data  # type: ignore[return-value]


def load_config(
    schema: type[T],
    *sources: str | Path | Mapping[str, Any],
    overrides: Sequence[str] = (),
) -> T:
    """Build a ``schema`` instance from YAML files / mappings, then ``key=value`` overrides.

    Args:
        schema: the dataclass to fill.
        sources: YAML paths or mappings, merged in order (later wins).
        overrides: command-line style ``a.b=value`` strings, applied last.

    Raises:
        ConfigError: unknown key (with a suggestion), wrong type, missing required value.
    """
    layers: list[tuple[str, Mapping[str, Any]]] = []
    for src in sources:
        if isinstance(src, Mapping):
            layers.append(("config", src))
        else:
            layers.append((f"'{src}'", _read_yaml(Path(src))))
    if overrides:
        layers.append(("command-line override", parse_overrides(overrides)))

    merged = OmegaConf.structured(schema)
    for where, data in layers:
        _check_keys(schema, data, where)
        try:
            merged = OmegaConf.merge(merged, data)
        except OmegaConfBaseException as exc:
            raise _translate(exc, schema, where) from exc
    try:
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as exc:
        raise _translate(exc, schema, schema.__name__) from exc


def config_from_dict(schema: type[T], data: Mapping[str, Any]) -> T:
    """Strictly rebuild a config saved with :func:`config_to_dict`."""
    return load_config(schema, data)


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-serialisable dict of a dataclass config (nested dataclasses included)."""
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"expected a dataclass config, got {type(config).__name__}")
    return dataclasses.asdict(config)
