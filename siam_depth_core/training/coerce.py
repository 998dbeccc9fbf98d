"""Typed conversion of config values: YAML and `--set` values become the declared type of their `TrainConfig`
field (bools, numbers, strings, tuples, lists, data sources, nested dataclasses), or a ValueError names the key.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from siam_depth_core.data.sources import SourceSpec
from siam_depth_core.training.losses import LossWeights


def coerce_value(key: str, value: Any, hint: Any) -> Any:
    """Convert a YAML/CLI value to the field's declared type; ValueError naming the key otherwise."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return coerce_value(key, value, inner)
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ValueError(f"{key} must be a list of {len(args)} values, got {value!r}")
        return tuple(coerce_value(key, v, a) for v, a in zip(value, args, strict=True))
    if origin is list:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{key} must be a list, got {value!r}")
        return [coerce_value(key, v, args[0]) for v in value]
    if hint is SourceSpec:
        return _coerce_source(key, value)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):  # loss_weights, temporal, validation
        return _coerce_nested(key, value, hint)
    return _coerce_scalar(key, value, hint)


def _coerce_scalar(key: str, value: Any, hint: Any) -> Any:
    """`coerce_value` for a bool, int, float or str field."""
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{key} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{key} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):  # PyYAML reads `1e-4` (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise ValueError(f"{key} must be a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{key} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            hint_text = " (quote it: YAML reads off/on/yes/no as booleans)" if isinstance(value, bool) else ""
            raise ValueError(f"{key} must be a string, got {value!r}{hint_text}")
        return value
    raise TypeError(f"no conversion for field {key} of type {hint}")


def _coerce_source(key: str, value: Any) -> SourceSpec:
    """`coerce_value` for a data source (a mapping with SourceSpec's keys)."""
    if not isinstance(value, dict):
        raise ValueError(f"{key} must be a mapping such as {{kind: kitti_odometry, sequences: [all]}}, "
                         f"got {value!r}")
    fields = typing.get_type_hints(SourceSpec)
    unknown = set(value) - set(fields)
    if unknown:
        raise ValueError(f"unknown source key(s) {sorted(unknown)} in {key}; known: {sorted(fields)}")
    if "sequences" in value:  # `sequences: all`, and YAML reads `[01, 02]` as integers
        items = value["sequences"] if isinstance(value["sequences"], list) else [value["sequences"]]
        value = {**value, "sequences": [f"{v:02d}" if isinstance(v, int) and not isinstance(v, bool) else v
                                        for v in items]}
    return SourceSpec(**{k: coerce_value(f"{key}.{k}", v, fields[k]) for k, v in value.items()})


def _coerce_nested(key: str, value: Any, hint: Any) -> Any:
    """`coerce_value` for a nested dataclass field (loss_weights, temporal, validation)."""
    if not isinstance(value, dict):
        raise ValueError(f"{key} must be a mapping, got {value!r}")
    nested = typing.get_type_hints(hint)
    unknown = set(value) - set(nested)
    if unknown:
        what = "loss weight(s)" if hint is LossWeights else f"{key} key(s)"
        raise ValueError(f"unknown {what} {sorted(unknown)}; known: {sorted(nested)}")
    return hint(**{k: coerce_value(f"{key}.{k}", v, nested[k]) for k, v in value.items()})
