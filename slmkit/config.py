"""Strict loading of YAML and command-line values into frozen config dataclasses.

Every stage exports a frozen ``Config`` dataclass whose fields carry a one-line doc (``field(..., doc=)``).
This module turns YAML mappings (with their line numbers) and dotted overrides into those dataclasses and
refuses anything it does not understand: an unknown key, a wrong type or a missing field is a
``ConfigError`` that names the file, the line and the key, with a "did you mean" where one is close.
Defaults live only in the dataclasses; nothing here invents a value.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from dataclasses import MISSING
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from slmkit.errors import ConfigError

Lines = dict[tuple, int]
"""Line number (1-based) of each key path in a YAML document, e.g. ("stages", 2, "lr") -> 14."""


def field(default: Any = MISSING, *, doc: str, input: bool = False, factory: Any = MISSING) -> Any:
    """A dataclass field with a one-line doc; ``input=True`` marks a path that ``from:`` can wire."""
    meta = {"doc": doc, "input": input}
    if factory is not MISSING:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class Where:
    """Where a value came from, so that errors can point at it."""

    source: str
    lines: Lines
    path: tuple = ()

    def at(self, key: Any) -> Where:
        return Where(self.source, self.lines, self.path + (key,))

    def line(self) -> int | None:
        for cut in range(len(self.path), -1, -1):
            if self.path[:cut] in self.lines:
                return self.lines[self.path[:cut]]
        return None

    def fail(self, message: str) -> ConfigError:
        line = self.line()
        if line == 0:  # set by command-line overrides
            place = f"{self.source} (command-line override)"
        else:
            place = f"{self.source} line {line}" if line else self.source
        dotted = ".".join(str(p) for p in self.path)
        return ConfigError(f"{place}: {dotted + ': ' if dotted else ''}{message}")


def load_yaml(path: str | Path) -> tuple[Any, Lines]:
    """Parse a YAML file into plain Python values plus the line number of every key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror})") from err
    return parse_yaml(text, str(path))


def parse_yaml(text: str, source: str) -> tuple[Any, Lines]:
    """Parse YAML text; syntax errors name the source and line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{source}{line}: invalid YAML: {getattr(err, 'problem', err)}") from err
    lines: Lines = {}
    if node is None:
        return None, lines
    return _construct(node, (), lines, source, yaml.SafeLoader("")), lines


def _construct(node: yaml.Node, path: tuple, lines: Lines, source: str, loader: yaml.SafeLoader) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            if key in out:
                raise ConfigError(f"{source} line {key_node.start_mark.line + 1}: duplicate key '{key}'")
            lines[path + (key,)] = key_node.start_mark.line + 1
            out[key] = _construct(value_node, path + (key,), lines, source, loader)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, path + (i,), lines, source, loader) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def from_dict(cls: type, data: Any, where: Where) -> Any:
    """Build dataclass ``cls`` from a mapping, strictly."""
    if not isinstance(data, dict):
        raise where.fail(f"expected a mapping for {cls.__name__}, got {_kind(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            raise where.at(key).fail(f"unknown key '{key}'{_suggest(key, fields)}")
    values = {}
    for name, f in fields.items():
        if name in data:
            values[name] = convert(hints[name], data[name], where.at(name))
        elif f.default is MISSING and f.default_factory is MISSING:
            raise where.fail(f"missing field '{name}' ({f.metadata.get('doc', '')})")
    return cls(**values)


def convert(tp: Any, value: Any, where: Where) -> Any:
    """Check ``value`` against type ``tp`` and convert containers (lists stay lists, nested configs build)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        return _convert_union(typing.get_args(tp), value, where)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise where.fail(f"must be one of {list(choices)}, got {value!r}{_suggest(str(value), choices)}")
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise where.fail(f"expected a list, got {_kind(value)}")
        item = typing.get_args(tp)[0] if typing.get_args(tp) else Any
        items = [convert(item, v, where.at(i)) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise where.fail(f"expected a mapping, got {_kind(value)}")
        key_tp, val_tp = typing.get_args(tp) or (Any, Any)
        return {convert(key_tp, k, where.at(k)): convert(val_tp, v, where.at(k)) for k, v in value.items()}
    return _convert_scalar(tp, value, where)


def _convert_union(options: tuple, value: Any, where: Where) -> Any:
    if value is None and type(None) in options:
        return None
    errors = []
    for option in options:
        if option is type(None):
            continue
        try:
            return convert(option, value, where)
        except ConfigError as err:
            errors.append(str(err).rsplit(": ", 1)[-1])
    names = " or ".join(_type_name(o) for o in options)
    raise where.fail(f"expected {names}, got {_kind(value)} {value!r}")


def _convert_scalar(tp: Any, value: Any, where: Where) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads 3e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is type(None):
        if value is None:
            return None
    else:
        raise where.fail(f"unsupported field type {tp!r}")
    raise where.fail(f"expected {_type_name(tp)}, got {_kind(value)} {value!r}")


def to_dict(cfg: Any) -> dict[str, Any]:
    """A config as plain data (tuples become lists) for YAML/JSON output."""
    def plain(v: Any) -> Any:
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return plain(dataclasses.asdict(cfg))


def describe(cls: type) -> list[tuple[str, str, str, str]]:
    """(name, type, default, doc) for each field: what ``show-config`` and ``--help`` print."""
    hints = typing.get_type_hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        if f.default is not MISSING:
            default = json.dumps(f.default)  # JSON is valid YAML: null, true, "cosine"
        elif f.default_factory is not MISSING:
            default = json.dumps(f.default_factory())
        else:
            default = "(required)"
        rows.append((f.name, _type_name(hints[f.name]), default, f.metadata.get("doc", "")))
    return rows


def input_fields(cls: type) -> list[str]:
    """Names of the fields that ``from:`` may wire from an earlier stage's outputs."""
    return [f.name for f in dataclasses.fields(cls) if f.metadata.get("input")]


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into its key path and a YAML-parsed value."""
    if "=" not in text:
        raise ConfigError(f"command line: override '{text}' must look like key.path=value")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"command line: override '{text}' has an empty key part")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"command line: override '{text}': value is not valid YAML ({err})") from err
    return parts, value


def _suggest(word: str, options: Any) -> str:
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f" — did you mean '{close[0]}'?" if close else ""


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", type(None): "null"}.get(type(value), type(value).__name__)


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is Literal:
        return "one of " + "/".join(map(str, typing.get_args(tp)))
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))
