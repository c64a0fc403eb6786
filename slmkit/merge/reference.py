"""The same merge through mergekit, the reference implementation, for parity checks (dev-only).

``PARITY_CASES`` hold one mergekit-style config per shared method (filters and gradients included);
``parity_models`` saves tiny Llama models that fit them (a base, three fine-tune-like variants and one
unrelated model); ``run_mergekit`` merges with mergekit's Python API (CPU, offline); ``max_diffs``
compares two output folders tensor by tensor. Used by ``tests/test_merge_mergekit.py`` and
``bench/merge_vs_mergekit.py``; needs ``mergekit`` installed (``pip install mergekit``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

PARITY_CASES: dict[str, dict[str, Any]] = {
    "linear": {"models": [("m1", {"weight": 0.5}), ("m2", {"weight": 0.3}), ("m3", {"weight": 0.2})]},
    "task_arithmetic": {"base": "m0", "parameters": {"lambda": 0.8},
                        "models": [("m1", {"weight": 0.7}), ("m2", {"weight": [0.2, 0.9]})]},
    "ties": {"base": "m0", "models": [("m1", {"weight": 0.6, "density": 0.5}),
                                     ("m2", {"weight": 0.4, "density": [{"filter": "self_attn", "value": 0.3},
                                                                        {"value": [0.9, 0.5]}]})]},
    "dare_linear": {"base": "m0", "models": [("m1", {"weight": 0.5, "density": 0.6}),
                                            ("m2", {"weight": 0.5, "density": 0.4})]},
    "dare_ties": {"base": "m0", "parameters": {"normalize": True},
                  "models": [("m1", {"weight": 1.0, "density": 0.7}), ("m2", {"weight": 0.5, "density": 0.5}),
                             ("m3", {"weight": 0.8, "density": 0.6})]},
    "slerp": {"base": "m0", "models": [("far", {})],
              "parameters": {"t": [{"filter": "self_attn", "value": [0, 0.5, 0.3, 0.7, 1]},
                                   {"filter": "mlp", "value": [1, 0.5, 0.7, 0.3, 0]}, {"value": 0.5}]}},
    "breadcrumbs": {"base": "m0", "models": [("m1", {"weight": 1.0, "density": 0.9, "gamma": 0.01}),
                                            ("m2", {"weight": 0.5, "density": 0.8, "gamma": 0.05})]},
    "breadcrumbs_ties": {"base": "m0", "models": [("m1", {"weight": 1.0, "density": 0.9, "gamma": 0.02}),
                                                 ("m2", {"weight": 0.7, "density": 0.7, "gamma": 0.1})]},
    "model_stock": {"base": "m0", "models": [("m1", {}), ("m2", {}), ("m3", {})]},
}


def parity_models(root: Path) -> dict[str, Path]:
    """Save ``m0`` (base), ``m1``..``m3`` (base + 0.02·noise) and ``far`` (another init): 3-layer untied Llamas."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=96, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=64, tie_word_embeddings=False)
    torch.manual_seed(0)
    base = LlamaForCausalLM(config)
    paths = {"m0": Path(root) / "m0"}
    base.save_pretrained(paths["m0"])
    for i in (1, 2, 3):
        torch.manual_seed(i)
        variant = LlamaForCausalLM(config)
        variant.load_state_dict({k: v + 0.02 * torch.randn_like(v) for k, v in base.state_dict().items()})
        paths[f"m{i}"] = Path(root) / f"m{i}"
        variant.save_pretrained(paths[f"m{i}"])
    torch.manual_seed(9)
    paths["far"] = Path(root) / "far"
    LlamaForCausalLM(config).save_pretrained(paths["far"])
    return paths


def case_config(method: str, case: dict[str, Any], paths: dict[str, Any],
                refs: dict[str, str] | None = None) -> dict[str, Any]:
    """A mergekit-style config dict for ``case`` (model keys resolved through ``paths`` and ``refs``)."""
    where = {**{k: str(v) for k, v in paths.items()}, **(refs or {})}
    conf: dict[str, Any] = {"merge_method": method, "dtype": "float32",
                            "models": [{"model": where[m], "parameters": p} for m, p in case["models"]]}
    if "base" in case:
        conf["base_model"] = where[case["base"]]
    if "parameters" in case:
        conf["parameters"] = case["parameters"]
    return conf


def run_mergekit(conf: dict[str, Any], out: Path, seed: int = 0) -> None:
    """Merge ``conf`` with mergekit (CPU, no tokenizer copy, no card) into ``out``."""
    from mergekit.config import MergeConfiguration
    from mergekit.merge import MergeOptions, run_merge

    run_merge(MergeConfiguration.model_validate(conf), str(out),
              MergeOptions(random_seed=seed, quiet=True, copy_tokenizer=False, write_model_card=False))


def read_tensors(folder: Path) -> dict[str, Any]:
    """Every tensor of a model folder's safetensors files."""
    from safetensors.torch import load_file

    out: dict[str, Any] = {}
    for file in sorted(Path(folder).glob("*.safetensors")):
        out.update(load_file(file))
    return out


def max_diffs(a_folder: Path, b_folder: Path) -> dict[str, float]:
    """Max absolute difference per tensor between two outputs (which must hold the same tensors)."""
    a, b = read_tensors(a_folder), read_tensors(b_folder)
    if set(a) != set(b):
        raise AssertionError(f"different tensors: {sorted(set(a) ^ set(b))[:5]}")
    return {name: (a[name].double() - b[name].double()).abs().max().item() for name in a}
