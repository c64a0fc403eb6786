"""Plan a merge (or a chain of merges) completely, from configs and file headers, before any weight is read.

For each merge document: resolve the models (an earlier merge's name refers to its output), check that all
inputs share architecture, shape-defining config, tensor names and shapes, and vocabulary; check the method's
input count; resolve every parameter for every tensor and model (filters, gradients over the layers,
defaults) and check its type and range. Any problem is an error naming the merge, the model, the tensor and
the parameter — raised in seconds, not after loading gigabytes (mergekit #527). The result lists the output
tensors in name order (mergekit's order, so DARE's random draws match) with their resolved parameters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmkit.config import Where, _suggest
from slmkit.errors import ConfigError, ModelError
from slmkit.merge.config import MergeDoc, evaluate, filters
from slmkit.merge.inputs import (ModelFiles, TensorMeta, check_same_structure, check_same_tensors,
                                 check_same_vocabulary, read_model)
from slmkit.merge.method import REQUIRED, MergeMethod, Param
from slmkit.merge.writer import CODES, FLOATING, TensorSpec, shard_layout

_LAYER = re.compile(r"^(.*?)\.(\d+)\.")


@dataclass(frozen=True)
class Step:
    """One output tensor: its spec and the parameters resolved for it."""

    spec: TensorSpec
    shared: dict[str, Any]
    per_model: list[dict[str, Any]]

    @property
    def floating(self) -> bool:
        return self.spec.dtype in FLOATING


@dataclass(frozen=True)
class MergePlan:
    """Everything needed to execute one merge document."""

    doc: MergeDoc
    method: MergeMethod
    base: ModelFiles | None
    inputs: list[ModelFiles]
    steps: list[Step]
    layout: dict[str, list[TensorSpec]]
    output: Path
    out_config: dict[str, Any]
    tokenizer_from: ModelFiles

    @property
    def label(self) -> str:
        return merge_label(self.doc)


def merge_label(doc: MergeDoc) -> str:
    return f"merge '{doc.config.name}'" if doc.config.name else f"merge in {doc.where.source}"


def plan_merges(docs: list[MergeDoc], output: Path, intermediate: Path, shard_size: int) -> list[MergePlan]:
    """Plans for every document; all but the last write to ``intermediate/<name>``."""
    from slmkit.merge import get_method

    names = [d.config.name for d in docs]
    if len(docs) > 1 and (None in names or len(set(names)) != len(names)):
        raise ConfigError(f"{docs[0].where.source}: a file with several merges must give each a distinct 'name'")
    done: dict[str, ModelFiles] = {}
    plans = []
    for i, doc in enumerate(docs):
        try:
            method = get_method(doc.config.merge_method)
        except ConfigError as err:
            raise doc.where.at("merge_method").fail(str(err)) from None
        _check_order(doc, names[i:])
        out = output if i == len(docs) - 1 else intermediate / str(doc.config.name)
        plan = plan_one(doc, method, out, done, shard_size)
        plans.append(plan)
        if doc.config.name:
            done[doc.config.name] = output_files(plan)
    return plans


def _check_order(doc: MergeDoc, later: list[str | None]) -> None:
    """A merge may use the output of an earlier merge of its file, never its own or a later one."""
    refs = [(doc.where.at("base_model"), doc.config.base_model)]
    refs += [(doc.where.at("models").at(i).at("model"), m.model) for i, m in enumerate(doc.config.models)]
    for where, ref in refs:
        if ref is not None and ref in later:
            raise where.fail(f"'{ref}' is this merge or a later one; a merge can only use earlier merges")


def plan_one(doc: MergeDoc, method: MergeMethod, output: Path, done: dict[str, ModelFiles],
             shard_size: int) -> MergePlan:
    """Check one merge document against its models and resolve its parameters."""
    base, inputs = _models(doc, method, done)
    # The output takes its config, tensor list and tokenizer from the base (a linear merge's listed base_model).
    reference = base or next((m for m in inputs if m.ref == doc.config.base_model), inputs[0])
    tokenizer_from = _tokenizer_source(doc, reference, done)
    for other in [*inputs, tokenizer_from]:
        if other is not reference:
            check_same_structure(reference, other)
            check_same_tensors(reference, other)
            check_same_vocabulary(reference, other)
    _check_parameter_names(doc, method, reference)
    out_dtype = doc.config.out_dtype or doc.config.dtype
    positions = layer_positions(list(reference.tensors))
    steps = [_step(doc, method, name, meta, positions[name], inputs, out_dtype)
             for name, meta in sorted(reference.tensors.items())]
    layout = shard_layout([s.spec for s in steps], shard_size)
    return MergePlan(doc, method, base, inputs, steps, layout, output, _out_config(reference, out_dtype),
                     tokenizer_from)


def _open(ref: str, done: dict[str, ModelFiles], where: Where) -> ModelFiles:
    if ref in done:
        return done[ref]
    try:
        return read_model(ref)
    except ModelError as err:
        raise where.fail(str(err)) from None


def _models(doc: MergeDoc, method: MergeMethod, done: dict[str, ModelFiles]) -> tuple[ModelFiles | None, list]:
    """(base or None, the other inputs in config order), with the method's input-count rules."""
    cfg, where = doc.config, doc.where
    listed = [m.model for m in cfg.models]
    if method.uses_base and not cfg.base_model:
        raise where.fail(f"{method.name} needs a base_model")
    if not method.uses_base and cfg.base_model and cfg.base_model not in listed:
        raise where.at("base_model").fail(f"{method.name} has no base model: list '{cfg.base_model}' under "
                                          "models with a weight, or drop base_model")
    if len(set(listed)) != len(listed):
        raise where.at("models").fail("a model is listed twice")
    base = _open(cfg.base_model, done, where.at("base_model")) if method.uses_base else None
    # mergekit lets the base appear among the models; it is still the base, not an input.
    entries = [(i, m) for i, m in enumerate(cfg.models) if not (method.uses_base and m.model == cfg.base_model)]
    inputs = [_open(m.model, done, where.at("models").at(i).at("model")) for i, m in entries]
    if len(inputs) < method.min_models or (method.max_models and len(inputs) > method.max_models):
        wanted = (f"exactly {method.min_models}" if method.min_models == method.max_models
                  else f"at least {method.min_models}")
        raise where.at("models").fail(f"{method.name} merges {wanted} model(s) besides the base, got {len(inputs)}")
    return base, inputs


def _tokenizer_source(doc: MergeDoc, reference: ModelFiles, done: dict[str, ModelFiles]) -> ModelFiles:
    source = doc.config.tokenizer_source
    if source in (None, "base", reference.ref):
        return reference
    return _open(source, done, doc.where.at("tokenizer_source"))


def _check_parameter_names(doc: MergeDoc, method: MergeMethod, reference: ModelFiles) -> None:
    """Unknown names, shared parameters set per model, and filters that match no tensor are errors."""
    known = method.parameters()
    scopes = [(doc.where.at("parameters"), doc.config.parameters, known)]
    scopes += [(doc.where.at("models").at(i).at("parameters"), m.parameters, method.per_model)
               for i, m in enumerate(doc.config.models)]
    for where, settings, allowed in scopes:
        for key, setting in settings.items():
            if key in method.shared and allowed is method.per_model:
                raise where.at(key).fail(f"'{key}' applies to all models of {method.name}: set it under the "
                                         "top-level parameters")
            if key not in allowed:
                names = ", ".join(known) or "none"
                raise where.at(key).fail(f"{method.name} has no parameter '{key}'{_suggest(key, known)} "
                                         f"(its parameters: {names})")
            for pattern in filters(setting):
                if not any(pattern in name for name in reference.tensors):
                    example = next(iter(sorted(reference.tensors)), "")
                    raise where.at(key).fail(f"filter '{pattern}' matches no tensor of '{reference.ref}' "
                                             f"(names look like '{example}')")


def layer_positions(names: list[str]) -> dict[str, float]:
    """Where each tensor sits in its layer stack, in [0, 1], for gradients: mergekit's ``t``.

    The first numeric path component is the layer index (``model.layers.3.mlp...``, ``decoder.block.1...``);
    stacks are told apart by the prefix before it. Tensors outside any stack (embeddings, final norm)
    get 0, as mergekit gives its pre- and post-layer weights.
    """
    found = {name: m for name in names if (m := _LAYER.match(name))}
    depth: dict[str, int] = {}
    for m in found.values():
        depth[m.group(1)] = max(depth.get(m.group(1), 0), int(m.group(2)) + 1)
    positions = {}
    for name in names:
        m = found.get(name)
        if m is None:
            positions[name] = 0.0
        else:
            n = depth[m.group(1)]
            positions[name] = int(m.group(2)) / (n - 1) if n > 1 else 1.0
    return positions


def _step(doc: MergeDoc, method: MergeMethod, name: str, meta: TensorMeta, position: float,
          inputs: list[ModelFiles], out_dtype: str | None) -> Step:
    """The output spec of one tensor and its parameters (floating tensors only are merged)."""
    floating = meta.dtype in FLOATING
    dtype = CODES[out_dtype] if out_dtype and floating else meta.dtype
    spec = TensorSpec(name, meta.shape, dtype)
    if not floating:
        return Step(spec, {}, [])
    top = doc.config.parameters
    where = doc.where
    shared = {k: _resolve(p, k, [top], name, position, where.at("parameters"), "")
              for k, p in method.shared.items()}
    refs = {i.ref for i in inputs}
    entries = [(i, m) for i, m in enumerate(doc.config.models) if m.model in refs]
    per_model = [{k: _resolve(p, k, [m.parameters, top], name, position, where.at("models").at(i).at("parameters"),
                              f" of model '{m.model}'") for k, p in method.per_model.items()} for i, m in entries]
    if method.check and (problem := method.check(shared, per_model)):
        raise where.fail(f"{method.name} on tensor '{name}': {problem}")
    return Step(spec, shared, per_model)


def _resolve(param: Param, key: str, sources: list[dict], tensor: str, position: float, where: Where,
             whose: str) -> Any:
    """The first setting that yields a value for ``tensor``, else the default; checked against ``param``."""
    value = None
    for settings in sources:
        if key in settings and (value := evaluate(settings[key], tensor, position)) is not None:
            break
    if value is None:
        if param.default is REQUIRED:
            raise where.fail(f"parameter '{key}'{whose} is required and not set for tensor '{tensor}'")
        return param.default
    value, problem = param.check(value)
    if problem:
        raise where.at(key).fail(f"parameter '{key}'{whose} for tensor '{tensor}' {problem}, got {value!r}")
    return value


def _out_config(reference: ModelFiles, out_dtype: str | None) -> dict[str, Any]:
    config = dict(reference.config)
    if out_dtype:
        config["dtype"] = out_dtype
        if "torch_dtype" in config:
            config["torch_dtype"] = out_dtype
    return config


def output_files(plan: MergePlan) -> ModelFiles:
    """What a later merge will find in this plan's output folder (known before it is written)."""
    tensors = {spec.name: TensorMeta(spec.shape, spec.dtype, file)
               for file, specs in plan.layout.items() for spec in specs}
    return ModelFiles(str(plan.doc.config.name), plan.output, plan.out_config, tensors, plan.tokenizer_from.vocab)
