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

from slmkit.merge.reference import PARITY_CASES, case_config, max_diffs, parity_models, read_tensors, run_mergekit  # noqa: E402

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def llamas(tmp_path_factory):
    return parity_models(tmp_path_factory.mktemp("llamas"))


@pytest.mark.parametrize("method", list(PARITY_CASES))
def test_parity_with_mergekit(method, llamas, tmp_path):
    from slmkit.cli import main

    conf = case_config(method, PARITY_CASES[method], llamas)
    (tmp_path / "merge.yaml").write_text(yaml.safe_dump(conf))
    run_mergekit(conf, tmp_path / "mergekit", seed=42)
    assert main(["merge", str(tmp_path / "merge.yaml"), str(tmp_path / "slmkit"), "--seed", "42"]) == 0
    diffs = max_diffs(tmp_path / "mergekit", tmp_path / "slmkit")
    worst = max(diffs, key=diffs.get)
    assert diffs[worst] <= TOLERANCE, f"{method}: {worst} differs by {diffs[worst]}"
    # the merge did something: it is neither the base nor any input
    merged = read_tensors(tmp_path / "slmkit")["model.layers.1.mlp.up_proj.weight"]
    for name in ("m0", "m1", "far"):
        assert not merged.equal(read_tensors(llamas[name])["model.layers.1.mlp.up_proj.weight"])


def test_dare_seed_changes_masks(llamas, tmp_path):
    """The seed is really used: another seed gives another DARE merge (in both tools alike)."""
    from slmkit.cli import main

    conf = case_config("dare_linear", PARITY_CASES["dare_linear"], llamas)
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
    docs = [{"name": "a", **case_config("slerp", {**slerp, "models": [("m1", {})]}, llamas)},
            {"name": "b", **case_config("slerp", {**slerp, "models": [("m2", {})]}, llamas)},
            {"name": "final", **case_config("breadcrumbs", crumbs, llamas, refs={"a": "a", "b": "b"})}]
    (tmp_path / "chain.yaml").write_text("---\n".join(yaml.safe_dump(d) for d in docs))
    assert main(["merge", str(tmp_path / "chain.yaml"), str(tmp_path / "slmkit")]) == 0
    assert not (tmp_path / ".slmkit.intermediate").exists()
    for doc in docs[:2]:
        run_mergekit({k: v for k, v in doc.items() if k != "name"}, tmp_path / doc["name"], seed=0)
    final = case_config("breadcrumbs", crumbs, llamas, refs={"a": str(tmp_path / "a"), "b": str(tmp_path / "b")})
    run_mergekit(final, tmp_path / "mergekit", seed=0)
    assert max(max_diffs(tmp_path / "mergekit", tmp_path / "slmkit").values()) <= TOLERANCE
