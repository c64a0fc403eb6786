"""The harness core: resume without duplicates, methods over the same generations, judge cache, cascade,
an HTTP judge served by a real tiny model, and compressed variants."""

from __future__ import annotations

import threading
import time

import pytest

from slmkit.eval import harness
from slmkit.eval.harness import Settings, Subject, run_cell, score
from slmkit.eval.judges import Judge, parse_verdict
from slmkit.eval.store import Store
from slmkit.eval.taskspec import load_items, load_spec
from slmkit.models.generate import Generation

from eval_helpers import GoldJudge, one_thread  # noqa: F401  (one_thread is an autouse fixture)


def _settings(methods, seeds=(0, 1), strategies=("direct",), k=2):
    return Settings(list(strategies), list(methods), list(seeds), k, 8, 0.0, 1.0, 4, "plain", "strict", True)


def _fake_subject(answers: dict[str, str], fail_after: int | None = None):
    calls = []

    def gen(prompts, cfg):
        if fail_after is not None and len(calls) >= fail_after:
            raise KeyboardInterrupt("killed")
        calls.append(list(prompts))
        return [Generation(p, [answers.get(p, "I think 3 * 4 = 12. The answer is 12.")], [5]) for p in prompts]

    return Subject("fake", gen), calls


def test_killed_run_resumes_without_duplicates(tmp_path, monkeypatch):
    monkeypatch.setattr(harness, "CHUNK", 3)
    spec = load_spec("math_builtin")
    items, pool = load_items(spec)
    items = items[:8]
    store = Store(tmp_path / "r.sqlite")
    subject, calls = _fake_subject({}, fail_after=2)
    with pytest.raises(KeyboardInterrupt):
        run_cell(store, subject, "math_builtin", spec, items, pool, "kshot", 0, _settings(["strict"]), {})
    assert store.query("SELECT COUNT(*) AS n FROM generations")[0]["n"] == 6
    subject, calls = _fake_subject({})
    run_cell(store, subject, "math_builtin", spec, items, pool, "kshot", 0, _settings(["strict"]), {})
    assert sum(len(c) for c in calls) == 2  # only the two missing items were generated
    assert store.query("SELECT COUNT(*) AS n FROM generations")[0]["n"] == 8
    run_cell(store, subject, "math_builtin", spec, items, pool, "kshot", 0, _settings(["strict"]), {})
    assert store.query("SELECT COUNT(*) AS n FROM predictions")[0]["n"] == 8
    assert store.query("SELECT COUNT(*) AS n FROM results")[0]["n"] == 1
    subject, calls = _fake_subject({})  # other exemplars: stored outputs no longer apply, all regenerated
    run_cell(store, subject, "math_builtin", spec, items, pool, "kshot", 0, _settings(["strict"], k=3), {})
    assert sum(len(c) for c in calls) == 8 and store.query("SELECT COUNT(*) AS n FROM generations")[0]["n"] == 8


def test_greedy_zero_shot_is_generated_once_across_seeds(tmp_path):
    spec = load_spec("math_builtin")
    items, pool = load_items(spec)
    store = Store(tmp_path / "r.sqlite")
    subject, calls = _fake_subject({})
    for seed in (0, 1, 2):
        run_cell(store, subject, "math_builtin", spec, items[:4], pool, "direct", seed, _settings(["flexible"]), {})
    assert len(calls) == 1 and store.query("SELECT COUNT(*) AS n FROM generations")[0]["n"] == 12


def test_methods_score_the_same_generations(tmp_path):
    spec = load_spec("math_builtin")
    items = [{"id": str(i), "question": f"q{i}", "answer": "12"} for i in range(4)]
    rows = [{"item_id": "0", "output": "3 * 4 = 12.\n#### 12"}, {"item_id": "1", "output": "It is 12"},
            {"item_id": "2", "output": "no idea"}, {"item_id": "3", "output": "#### 13"}]
    judge = Judge({"kind": "gold"}, tmp_path / "cache.sqlite")
    judge.backend = GoldJudge()
    GoldJudge.calls = 0
    strict, s = score("strict", rows, items, spec, {"": judge})
    assert [p["correct"] for p in strict] == [True, False, False, False] and s["parse_failures"] == 2
    flexible, s = score("flexible", rows, items, spec, {"": judge})
    assert [p["correct"] for p in flexible] == [True, True, False, False] and s["parse_failure_rate"] == 0.25
    cascade, s = score("cascade", rows, items, spec, {"": judge})
    assert [p["correct"] for p in cascade] == [True, True, False, False] and s["judge_calls"] == 2
    assert cascade[1]["trace"]["steps"][-1]["judge"] == judge.name
    judged, s = score("judge", rows, items, spec, {"": judge})
    assert [p["correct"] for p in judged] == [True, True, False, False]
    assert s["judge_calls"] == 2 and GoldJudge.calls == 4  # the two cascade verdicts came from the cache
    assert flexible[1]["trace"] == {"raw": "It is 12", "gold": "12", "steps": [
        {"extractor": "last_number", "value": "12"}]}
    judge.close()


def test_judge_cache_survives_a_new_judge(tmp_path):
    GoldJudge.calls = 0
    j1 = Judge({"kind": "gold", "name": "kw"}, tmp_path / "c.sqlite")
    j1.backend = GoldJudge()
    first = j1.grade(["q"] * 3, ["5", "5", "6"], ["it is 5", "it is 5", "7"])
    assert [g["verdict"] for g in first] == [True, True, False] and GoldJudge.calls == 2  # duplicate asked once
    j2 = Judge({"kind": "gold", "name": "kw"}, tmp_path / "c.sqlite")
    second = j2.grade(["q"] * 3, ["5", "5", "6"], ["it is 5", "it is 5", "7"])
    assert j2.backend is None and all(g["cached"] for g in second) and GoldJudge.calls == 2
    assert parse_verdict("Verdict: Incorrect.") is False and parse_verdict("yes!") is True
    assert parse_verdict("maybe") is None


def _serve(model, tokenizer):
    """A small OpenAI-compatible /v1/completions server around a real (pico) model, on 127.0.0.1."""
    import socket

    import uvicorn
    from fastapi import FastAPI

    from slmkit.models.generate import GenerateConfig, generate

    app = FastAPI()

    @app.post("/v1/completions")
    def completions(body: dict):
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        cfg = GenerateConfig(max_new_tokens=body.get("max_tokens", 16), stop=body.get("stop") or [])
        outs = generate(model, tokenizer, prompts, cfg, show_progress=False)
        return {"object": "text_completion", "model": body.get("model", "pico"),
                "choices": [{"index": i, "text": o.texts[0], "finish_reason": "length"} for i, o in enumerate(outs)]}

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}/v1"


def test_http_judge_against_a_served_tiny_model(tmp_path, decoder_model, tokenizer):
    """The ``openai`` backend as a judge, talking to a real tiny model behind HTTP."""
    server, url = _serve(decoder_model, tokenizer)
    try:
        spec = {"kind": "openai", "base_url": url, "model": "pico"}
        judge = Judge(spec, tmp_path / "c.sqlite", max_new_tokens=4)
        graded = judge.grade(["1 + 1?", "2 + 2?"], ["2", "4"], ["2", "5"])
        assert len(graded) == 2 and judge.calls == 2
        assert all(isinstance(g["output"], str) and g["verdict"] in (True, False, None) for g in graded)
        again = Judge(spec, tmp_path / "c.sqlite", max_new_tokens=4).grade(["1 + 1?"], ["2"], ["2"])
        assert again[0]["cached"] and again[0]["output"] == graded[0]["output"]
    finally:
        server.should_exit = True


def test_compressed_variants(tmp_path, decoder_model, tokenizer):
    import torch

    from slmkit.eval.compress import compress, disk_bytes, measure_rss
    from slmkit.models.load import save_model

    ids = torch.tensor([tokenizer("Tom has 3 apples.")["input_ids"]])
    base = decoder_model.eval()(ids).logits
    sizes = {"original": disk_bytes(decoder_model)}
    for variant in ("int8", "int4", "pruned"):
        small = compress(decoder_model, variant)
        logits = small(ids).logits
        assert torch.corrcoef(torch.stack([logits.flatten(), base.flatten()]))[0, 1] > 0.9, variant
        sizes[variant] = disk_bytes(small)
    assert sizes["int8"] < 0.6 * sizes["original"] and sizes["int4"] < sizes["int8"]
    assert sizes["pruned"] == sizes["original"]  # stored dense
    pruned = compress(decoder_model, "pruned")
    weight = pruned.model.layers[0].mlp.up_proj.weight
    assert (weight == 0).float().mean().item() == pytest.approx(0.5, abs=0.01)
    assert decoder_model.model.layers[0].mlp.up_proj.weight.ne(0).all()  # the original is untouched
    save_model(decoder_model, tokenizer, tmp_path / "m")
    rss = measure_rss(str(tmp_path / "m"), "int4")
    assert 0 < rss["rss_mb"] < rss["peak_rss_mb"]
