"""Numerical parity with mergekit 0.1.5 (dev-only): the same tiny Llama models merged by both, every method.

Each case writes one mergekit-style YAML, runs it through mergekit's Python API and through
``slmkit merge``, and compares every output tensor: max abs difference <= 1e-5. DARE runs with one seed
in both (slmkit draws from a generator seeded like mergekit's ``random_seed``, in the same order), so
even its random masks agree. A chain (SLERP each expert into the base, then BreadCrumbs) is compared
with two consecutive mergekit runs.
"""

from __future__ import annotations

import pytest
import yaml

mergekit = pytest.importorskip("mergekit")

TOLERANCE = 1e-5

CASES = {
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


@pytest.fixture(scope="module")
def llamas(tmp_path_factory):
    """A base, three fine-tune-like variants (base + small noise) and one unrelated model, untied, 3 layers."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    root = tmp_path_factory.mktemp("llamas")
    config = LlamaConfig(vocab_size=96, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=64, tie_word_embeddings=False)
    torch.manual_seed(0)
    base = LlamaForCausalLM(config)
    paths = {"m0": root / "m0"}
    base.save_pretrained(paths["m0"])
    for i in (1, 2, 3):
        torch.manual_seed(i)
        variant = LlamaForCausalLM(config)
        variant.load_state_dict({k: v + 0.02 * torch.randn_like(v) for k, v in base.state_dict().items()})
        paths[f"m{i}"] = root / f"m{i}"
        variant.save_pretrained(paths[f"m{i}"])
    torch.manual_seed(9)
    paths["far"] = root / "far"
    LlamaForCausalLM(config).save_pretrained(paths["far"])
    return paths


def config_for(method: str, case: dict, paths: dict, refs: dict | None = None) -> dict:
    refs = refs or {}
    where = {**{k: str(v) for k, v in paths.items()}, **refs}
    conf = {"merge_method": method, "dtype": "float32",
            "models": [{"model": where[m], "parameters": p} for m, p in case["models"]]}
    if "base" in case:
        conf["base_model"] = where[case["base"]]
    if "parameters" in case:
        conf["parameters"] = case["parameters"]
    return conf


def run_mergekit(conf: dict, out, seed: int) -> None:
    from mergekit.config import MergeConfiguration
    from mergekit.merge import MergeOptions, run_merge

    run_merge(MergeConfiguration.model_validate(conf), str(out),
              MergeOptions(random_seed=seed, quiet=True, copy_tokenizer=False, write_model_card=False))


def tensors(folder) -> dict:
    from safetensors.torch import load_file

    out = {}
    for file in sorted(folder.glob("*.safetensors")):
        out.update(load_file(file))
    return out


def max_diffs(a_folder, b_folder) -> dict[str, float]:
    a, b = tensors(a_folder), tensors(b_folder)
    assert set(a) == set(b)
    return {name: (a[name].double() - b[name].double()).abs().max().item() for name in a}


@pytest.mark.parametrize("method", list(CASES))
def test_parity_with_mergekit(method, llamas, tmp_path):
    from slmkit.cli import main

    conf = config_for(method, CASES[method], llamas)
    (tmp_path / "merge.yaml").write_text(yaml.safe_dump(conf))
    run_mergekit(conf, tmp_path / "mergekit", seed=42)
    assert main(["merge", str(tmp_path / "merge.yaml"), str(tmp_path / "slmkit"), "--seed", "42"]) == 0
    diffs = max_diffs(tmp_path / "mergekit", tmp_path / "slmkit")
    worst = max(diffs, key=diffs.get)
    assert diffs[worst] <= TOLERANCE, f"{method}: {worst} differs by {diffs[worst]}"
    # the merge did something: it is neither the base nor any input
    merged = tensors(tmp_path / "slmkit")["model.layers.1.mlp.up_proj.weight"]
    for name in ("m0", "m1", "far"):
        assert not merged.equal(tensors(llamas[name])["model.layers.1.mlp.up_proj.weight"])


def test_dare_seed_changes_masks(llamas, tmp_path):
    """The seed is really used: another seed gives another DARE merge (in both tools alike)."""
    from slmkit.cli import main

    conf = config_for("dare_linear", CASES["dare_linear"], llamas)
    (tmp_path / "merge.yaml").write_text(yaml.safe_dump(conf))
    for seed in (1, 2):
        assert main(["merge", str(tmp_path / "merge.yaml"), str(tmp_path / f"s{seed}"), "--seed", str(seed)]) == 0
    assert max(max_diffs(tmp_path / "s1", tmp_path / "s2").values()) > 1e-3


def test_chain_matches_consecutive_mergekit_runs(llamas, tmp_path):
    """MediPhi's shape: SLERP two experts into the base, then BreadCrumbs across the two SLERP outputs."""
    from slmkit.cli import main

    slerp = {"base": "m0", "parameters": {"t": 0.5}}
    crumbs = {"base": "m0", "models": [("a", {"weight": 1.0, "density": 0.9, "gamma": 0.01}),
                                      ("b", {"weight": 1.0, "density": 0.9, "gamma": 0.01})]}
    docs = [{"name": "a", **config_for("slerp", {**slerp, "models": [("m1", {})]}, llamas)},
            {"name": "b", **config_for("slerp", {**slerp, "models": [("m2", {})]}, llamas)},
            {"name": "final", **config_for("breadcrumbs", crumbs, llamas, refs={"a": "a", "b": "b"})}]
    (tmp_path / "chain.yaml").write_text("---\n".join(yaml.safe_dump(d) for d in docs))
    assert main(["merge", str(tmp_path / "chain.yaml"), str(tmp_path / "slmkit")]) == 0
    assert not (tmp_path / ".slmkit.intermediate").exists()
    for doc in docs[:2]:
        run_mergekit({k: v for k, v in doc.items() if k != "name"}, tmp_path / doc["name"], seed=0)
    final = config_for("breadcrumbs", crumbs, llamas, refs={"a": str(tmp_path / "a"), "b": str(tmp_path / "b")})
    run_mergekit(final, tmp_path / "mergekit", seed=0)
    assert max(max_diffs(tmp_path / "mergekit", tmp_path / "slmkit").values()) <= TOLERANCE
