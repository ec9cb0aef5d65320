"""Config: frozen dataclasses per stage, loaded from YAML with unknown keys rejected.

Stage configs live beside their stages (e.g. `pipeline.refine.crf.CRFConfig`); this module composes
them into one config per command and turns YAML into those dataclasses.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

import yaml

from pipeline import storage

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override does not fit its dataclass; the message names the key."""


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "") -> T:
    """Build dataclass cls from a plain dict, recursing into nested dataclasses.

    Unknown keys and values of the wrong type raise ConfigError naming the full key path.
    """
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown config key '{where}{unknown[0]}'; allowed under {where or 'top level'}: "
            f"{', '.join(sorted(fields))}"
        )
    values = {name: _convert(hints[name], value, f"{where}{name}") for name, value in data.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as error:  # a stage's own __post_init__ validation
        raise ConfigError(f"{where or 'config'}: {error}") from None


def _convert(hint: Any, value: Any, key: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, f"{key}.")
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            try:
                return _convert(option, value, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: {value!r} is not one of {hint}")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        args = typing.get_args(hint)
        item_hint = args[0] if args else Any
        return tuple(_convert(item_hint, v, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is typing.Literal:
        if value not in typing.get_args(hint):
            raise ConfigError(f"{key}: {value!r} is not one of {typing.get_args(hint)}")
        return value
    return _check_scalar(hint, value, key)


def _check_scalar(hint: Any, value: Any, key: str) -> Any:
    if hint is Any or hint is object:
        return value
    if hint is type(None):
        if value is None:
            return None
        raise ConfigError(f"{key}: expected null, got {value!r}")
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{key}: expected {hint.__name__}, got {value!r}")
    if isinstance(hint, type) and not isinstance(value, hint):
        raise ConfigError(f"{key}: expected {hint.__name__}, got {value!r}")
    return value


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def load_yaml(uri: str | None) -> dict[str, Any]:
    """A YAML mapping from a local path or URI (safe loader), {} for None."""
    if not uri:
        return {}
    try:
        data = yaml.safe_load(storage.read_text(uri))
    except yaml.YAMLError as error:
        raise ConfigError(f"{uri}: invalid YAML: {error}") from None
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {uri}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{uri}: the top level must be a mapping")
    return data


def load_config(cls: type[T], uri: str | None, overrides: dict[str, Any] | None = None) -> T:
    """cls from a YAML file, then dotted-key overrides (e.g. {"train.epochs": 3}) on top."""
    data = load_yaml(uri)
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return from_dict(cls, data)


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dataclass -> {"a.b.c": value} (for MLflow params and run.json)."""
    flat: dict[str, Any] = {}
    for key, value in (to_dict(config) if dataclasses.is_dataclass(config) else config).items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
