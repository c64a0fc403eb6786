"""mergekit-style merge configs: YAML (one merge, or several separated by ``---``) → typed, checked configs.

Keys are mergekit's: ``merge_method``, ``base_model``, ``models`` (each ``model`` + ``parameters``),
``parameters``, ``dtype``, ``out_dtype``, ``tokenizer_source``; a file with several documents names each
one (``name:``) and a later document may use an earlier one's name as a model (mergekit-multi's form), which
is how MediPhi's "SLERP each expert into the base, then BreadCrumbs across them" is one file.

A parameter value is a scalar, a gradient (a list of numbers interpolated over the layers, first layer to
last), or a list of ``{filter, value}`` conditions where the first condition whose ``filter`` is a
substring of the tensor name wins (``filter`` absent or ``"*"`` matches all) — exactly mergekit's rules.
mergekit features slmkit does not implement (``slices``, ``modules``, tokenizer unions) are refused with
a message naming the key. Reads: the YAML file. Writes: nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmkit.config import Where, field, from_dict, parse_yaml
from slmkit.errors import ConfigError

UNSUPPORTED = {
    "slices": "layer slices (frankenmerges) are not supported; merge whole models with 'models'",
    "modules": "per-module configs are not supported; use parameter filters instead",
    "tokenizer": "tokenizer surgery is not supported; the models must share one vocabulary",
    "chat_template": "chat templates are copied from the tokenizer source; set it there",
}
DTYPES = ("float32", "float16", "bfloat16", "float64")


@dataclass(frozen=True, kw_only=True)
class InputModel:
    model: str = field(doc="model folder or hub id, or the name of an earlier merge in the same file", input=True)
    parameters: dict[str, Any] = field(factory=dict, doc="this model's parameters (weight, density, gamma, ...)")


@dataclass(frozen=True, kw_only=True)
class MergeConfig:
    merge_method: str = field(doc="linear, task_arithmetic, ties, dare_linear, dare_ties, slerp, breadcrumbs, "
                                  "breadcrumbs_ties or model_stock")
    base_model: str | None = field(None, doc="the base model (required by all methods but linear)", input=True)
    models: list[InputModel] = field(factory=list, doc="the models to merge, each with its parameters", input=True)
    parameters: dict[str, Any] = field(factory=dict, doc="parameters for all models and tensors (filters allowed)")
    dtype: str | None = field(None, doc="dtype the inputs are read as, and of the output unless out_dtype is set")
    out_dtype: str | None = field(None, doc="dtype of the written weights (default: dtype, else the base's)")
    tokenizer_source: str | None = field(None, doc="model whose tokenizer is written: base (default) or a model")


@dataclass(frozen=True, kw_only=True)
class NamedMergeConfig(MergeConfig):
    name: str | None = field(None, doc="name of this merge, so that a later merge in the same file can use it")


@dataclass(frozen=True)
class MergeDoc:
    """One merge of a file, with where it came from (for error messages)."""

    config: NamedMergeConfig
    where: Where


def read_merge_file(path: str | Path) -> list[MergeDoc]:
    """Every merge document of a mergekit-style YAML file, strictly checked."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror})") from err
    docs = [doc_from_dict(data, Where(str(path), lines)) for data, lines in _documents(text, str(path))]
    if not docs:
        raise ConfigError(f"{path}: no merge in the file")
    return docs


def _documents(text: str, source: str) -> list[tuple[Any, dict]]:
    """Split on ``---`` lines; leading newlines keep each document's line numbers true to the file."""
    chunks, start, current = [], 0, []
    for number, line in enumerate(text.splitlines(keepends=True)):
        if line.rstrip() == "---":
            chunks.append((start, "".join(current)))
            start, current = number + 1, []
        else:
            current.append(line)
    chunks.append((start, "".join(current)))
    parsed = [parse_yaml("\n" * first + chunk, source) for first, chunk in chunks if chunk.strip()]
    return [(data, lines) for data, lines in parsed if data is not None]


def doc_from_dict(data: Any, where: Where) -> MergeDoc:
    """A ``MergeDoc`` from one parsed YAML mapping; unsupported mergekit keys get a specific message."""
    if isinstance(data, dict):
        for key, why in UNSUPPORTED.items():
            if key in data:
                raise where.at(key).fail(why)
    config = from_dict(NamedMergeConfig, data, where)
    check_config(config, where)
    return MergeDoc(config, where)


def check_config(cfg: MergeConfig, where: Where) -> None:
    """Checks that need no model: dtypes, parameter setting shapes, the tokenizer source."""
    for key in ("dtype", "out_dtype"):
        value = getattr(cfg, key)
        if value is not None and value not in DTYPES:
            raise where.at(key).fail(f"must be one of {', '.join(DTYPES)}, got {value!r}")
    if cfg.tokenizer_source == "union":
        raise where.at("tokenizer_source").fail("'union' vocabularies are not supported; the models must share one")
    if not cfg.models:
        raise where.at("models").fail("list at least one model to merge")
    for key, setting in cfg.parameters.items():
        check_setting(setting, where.at("parameters").at(key))
    for i, entry in enumerate(cfg.models):
        for key, setting in entry.parameters.items():
            check_setting(setting, where.at("models").at(i).at("parameters").at(key))


def check_setting(setting: Any, where: Where) -> None:
    """A setting is a scalar, a list of scalars (gradient), or {filter, value} conditions."""
    if _scalar(setting):
        return
    if isinstance(setting, dict):
        setting = [setting]
    if not isinstance(setting, list) or not setting:
        raise where.fail(f"expected a number, a true/false, a list (gradient) or filter conditions, got {setting!r}")
    if all(_scalar(s) for s in setting):
        return
    for i, cond in enumerate(setting):
        if not isinstance(cond, dict) or "value" not in cond or set(cond) - {"filter", "value"}:
            raise where.at(i).fail("each condition is a mapping with 'value' and an optional 'filter'")
        if cond.get("filter") is not None and not isinstance(cond["filter"], str):
            raise where.at(i).at("filter").fail("filter must be a string (a part of the tensor names)")
        if not (_scalar(cond["value"]) or (isinstance(cond["value"], list) and cond["value"]
                                           and all(_scalar(v) for v in cond["value"]))):
            raise where.at(i).at("value").fail("value must be a scalar or a list of scalars (gradient)")


def _scalar(value: Any) -> bool:
    return isinstance(value, bool | int | float | str)


def evaluate(setting: Any, tensor: str, position: float) -> Any:
    """mergekit's ``evaluate_setting``: the value for ``tensor`` at layer position ``position`` in [0, 1].

    Returns None when no condition matches (the next, less specific setting then applies).
    """
    if _scalar(setting):
        return _number(setting)
    if isinstance(setting, dict):
        setting = [setting]
    if all(_scalar(s) for s in setting):
        return _gradient([_number(s) for s in setting], position)
    for cond in setting:
        pattern = cond.get("filter")
        if pattern is None or pattern == "*" or pattern in tensor:
            return evaluate(cond["value"], tensor, position)
    return None


def filters(setting: Any) -> list[str]:
    """The filter strings of a setting (to check that each matches some tensor)."""
    if isinstance(setting, dict):
        setting = [setting]
    if not isinstance(setting, list):
        return []
    return [c["filter"] for c in setting if isinstance(c, dict) and c.get("filter") not in (None, "*")]


def _number(value: Any) -> Any:
    """YAML reads ``1e-3`` as a string; mergekit treats it as a number, and so do we."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _gradient(values: list[Any], position: float) -> Any:
    """Piecewise-linear interpolation over ``values``; non-numbers pick the nearest lower step."""
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    scaled = position * (len(values) - 1)
    low = int(scaled)
    if not numeric:
        return values[low]
    high = min(len(values) - 1, low + 1)
    frac = scaled - low
    return (1 - frac) * values[low] + frac * values[high]
