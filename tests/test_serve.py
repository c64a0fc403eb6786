"""``slmkit serve`` on loopback with a pico model: the official ``openai`` client (completions, chat,
streaming), engines against ``generate()``, stop strings, limits and bad requests (4xx with OpenAI error
bodies), the API key, the guard hook, metrics, cancellation, shutdown and a server killed mid-stream."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition, timeout: float) -> None:
    """Poll ``condition`` every 5 ms until it holds or ``timeout`` seconds pass (the caller asserts after)."""
    deadline = time.time() + timeout
    while not condition() and time.time() < deadline:
        time.sleep(0.005)


@contextlib.contextmanager
def serving(app, graceful: float = 2.0):
    """Run ``app`` as ``slmkit serve`` does, in a thread on a free loopback port; yields the base URL."""
    from slmkit.serve.cli import uvicorn_server

    port = free_port()
    server = uvicorn_server(app, app.state.server.engine, "127.0.0.1", port, graceful, "warning")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), 30)
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture(scope="module")
def model_dir(tokenizer, tmp_path_factory):
    """A pico decoder with large random weights (so its greedy text varies), saved like a user's model."""
    import torch

    from slmkit.models.build import build
    from slmkit.models.load import save_model

    model = build("decoder", "pico", tokenizer=tokenizer, seed=0)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    path = tmp_path_factory.mktemp("serve") / "pico-chat"
    save_model(model, tokenizer, path)
    return path


def make_app(model_dir, guard=None, engine=None, **settings):
    from slmkit.serve.app import ServeSettings
    from slmkit.serve.engine import load_engine
    from slmkit.serve.routes import create_app

    engine = engine or load_engine("torch", str(model_dir), max_batch=8, batch_wait_ms=2)
    base = dict(model_name="pico-chat", max_tokens=64, max_prompt_tokens=200)
    return create_app(engine, ServeSettings(**{**base, **settings}), guard)


@pytest.fixture(scope="module")
def url(model_dir):
    with serving(make_app(model_dir)) as (base, _):
        yield base


def client(url, **kwargs):
    return openai.OpenAI(base_url=url + "/v1", api_key=kwargs.pop("api_key", "unused"), max_retries=0, **kwargs)


def test_openai_client_completions_chat_and_streams(url):
    c = client(url)
    assert [m.id for m in c.models.list().data] == ["pico-chat"]
    done = c.completions.create(model="pico-chat", prompt=["Tom has 3", "Ann has"], max_tokens=12, temperature=0, n=2)
    assert [ch.index for ch in done.choices] == [0, 1, 2, 3]
    assert done.choices[0].text == done.choices[1].text != done.choices[2].text  # greedy: n copies agree
    assert done.usage.completion_tokens == sum(1 for _ in range(4)) * 12 and done.usage.prompt_tokens > 4
    streamed = list(c.completions.create(model="pico-chat", prompt="Tom has 3", max_tokens=12, temperature=0,
                                         stream=True))
    assert "".join(ch.choices[0].text for ch in streamed) == done.choices[0].text
    assert [ch.choices[0].finish_reason for ch in streamed][-1] == "length"
    assert all(ch.choices[0].finish_reason is None for ch in streamed[:-1])

    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "How many apples?"}]
    chat = c.chat.completions.create(model="pico-chat", messages=messages, max_tokens=10, temperature=0)
    assert chat.choices[0].message.role == "assistant" and chat.choices[0].finish_reason in ("stop", "length")
    chunks = list(c.chat.completions.create(model="pico-chat", messages=messages, max_tokens=10, temperature=0,
                                            stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == chat.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == chat.usage.completion_tokens


def test_seeded_sampling_is_reproducible(url):
    c = client(url)
    ask = dict(model="pico-chat", prompt="Tom has", max_tokens=16, temperature=1.0, top_p=0.9)
    a = c.completions.create(seed=7, n=2, **ask)
    b = c.completions.create(seed=7, n=2, **ask)
    other = c.completions.create(seed=8, n=2, **ask)
    assert [x.text for x in a.choices] == [x.text for x in b.choices]
    assert a.choices[0].text != a.choices[1].text and a.choices[0].text != other.choices[0].text


def test_stop_strings_cut_text_and_streams_never_show_them(url):
    c = client(url)
    full = c.completions.create(model="pico-chat", prompt="Ann has 5", max_tokens=30, temperature=0).choices[0].text
    stop = next(full[i:i + 2] for i in range(3, len(full) - 1) if full[i:i + 2].isascii() and full[i:i + 2].isprintable())
    cut = c.completions.create(model="pico-chat", prompt="Ann has 5", max_tokens=30, temperature=0, stop=[stop, "zzz"])
    assert cut.choices[0].text == full[:full.find(stop)] and cut.choices[0].finish_reason == "stop"
    streamed = list(c.completions.create(model="pico-chat", prompt="Ann has 5", max_tokens=30, temperature=0,
                                         stop=stop, stream=True))
    assert "".join(ch.choices[0].text for ch in streamed) == cut.choices[0].text


def test_continuous_and_request_engines_match_generate(model_dir):
    """Staggered requests joining a running batch produce exactly ``generate()``'s greedy tokens."""
    from slmkit.models.generate import GenerateConfig, generate
    from slmkit.models.load import load_model, load_tokenizer
    from slmkit.serve.engine import Sampling, load_engine

    tok, model = load_tokenizer(str(model_dir)), load_model(str(model_dir))
    prompts = ["Tom has 3 apples", "A", "Sara buys 12 pens and 4 books", "x y", "Ann"]
    reference = [g.texts[0] for g in generate(model, tok, prompts, GenerateConfig(max_new_tokens=15), False)]
    for scheduler in ("continuous", "request"):
        engine = load_engine("torch", str(model_dir), scheduler=scheduler, max_batch=4, batch_wait_ms=1)
        engine.start()
        texts = {i: [] for i in range(len(prompts))}
        finished = []
        for i, p in enumerate(prompts):  # plain format, as the foundation encodes it: prompt + newline
            engine.submit(tok(p + "\n")["input_ids"], Sampling(15, 0.0), 1,
                          lambda e, i=i: (texts[i].append(e.text), e.finish_reason and finished.append(i)))
            time.sleep(0.01 * i)
        wait_until(lambda: len(finished) >= len(prompts), 60)
        engine.shutdown()
        assert ["".join(texts[i]) for i in range(len(prompts))] == reference, scheduler


BAD = [
    ("/v1/completions", b"{not json", 400, None, "not valid JSON"),
    ("/v1/completions", b"[1, 2]", 400, None, "JSON object"),
    ("/v1/completions", {"prompt": "x"}, 400, "model", "field required"),
    ("/v1/completions", {"model": "gpt-4", "prompt": "x"}, 404, "model", "does not exist"),
    ("/v1/completions", {"model": "pico-chat", "prompt": 5}, 400, "prompt", "must be a string"),
    ("/v1/completions", {"model": "pico-chat", "prompt": []}, 400, "prompt", "must not be empty"),
    ("/v1/completions", {"model": "pico-chat", "prompt": [[1, 2], [99999]]}, 400, "prompt", "vocabulary"),
    ("/v1/completions", {"model": "pico-chat", "prompt": "x", "temperature": 5}, 400, "temperature", "less than"),
    ("/v1/completions", {"model": "pico-chat", "prompt": "x", "temperature": "hot"}, 400, "temperature", "number"),
    ("/v1/completions", {"model": "pico-chat", "prompt": "x", "top_p": 0}, 400, "top_p", "greater than"),
    ("/v1/completions", {"model": "pico-chat", "prompt": "x", "n": 0}, 400, "n", "greater than"),
    ("/v1/completions", {"model": "pico-chat", "prompt": "x", "n": True}, 400, "n", "integer"),
    ("/v1/completions", {"model": "pico-chat", "prompt": "x", "n": 50}, 400, "n", "at most"),
    ("/v1/completions", {"model": "pico-chat", "prompt": "x", "max_tokens": "9"}, 400, "max_tokens", "integer"),
    ("/v1/completions", {"model": "pico-chat", "prompt": "x", "max_tokens": 0}, 400, "max_tokens", "greater"),
    ("/v1/completions", {"model": "pico-chat", "prompt": "x", "max_tokens": 10**6}, 400, "max_tokens", "at most"),
    ("/v1/completions", {"model": "pico-chat", "prompt": "x", "stop": ["a"] * 5}, 400, "stop", "at most 4"),
    ("/v1/completions", {"model": "pico-chat", "prompt": "x", "stop": 3}, 400, "stop", "string"),
    ("/v1/completions", {"model": "pico-chat", "prompt": "x", "logprobs": 2}, 400, "logprobs", "not supported"),
    ("/v1/completions", {"model": "pico-chat", "prompt": "x", "seed": 1.5}, 400, "seed", "integer"),
    ("/v1/completions", {"model": "pico-chat", "prompt": "word " * 400}, 400, "prompt", "at most 200"),
    ("/v1/chat/completions", {"model": "pico-chat", "messages": []}, 400, "messages", "at least 1"),
    ("/v1/chat/completions", {"model": "pico-chat", "messages": [{"role": "bot", "content": "x"}]}, 400,
     "messages.0.role", "Input should be"),
    ("/v1/chat/completions", {"model": "pico-chat", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "x"}}]}]}, 400, "messages.0", "only text"),
    ("/v1/chat/completions", {"model": "pico-chat", "messages": [{"role": "user", "content": "x"}],
                              "tools": [{"type": "function"}]}, 400, "tools", "not supported"),
]


@pytest.mark.parametrize("path,body,status,param,message", BAD, ids=[f"{b[3]}-{b[4]}" for b in BAD])
def test_bad_requests_get_4xx_with_openai_error_bodies(url, path, body, status, param, message):
    kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
    answer = httpx.post(url + path, timeout=30, **kwargs)
    assert answer.status_code == status
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert error["param"] == param and message in error["message"]


def test_size_route_and_context_limits(url, model_dir):
    big = httpx.post(url + "/v1/completions", content=b'{"model": "pico-chat", "prompt": "' + b"a" * (2 << 20) + b'"}')
    assert big.status_code == 413 and big.json()["error"]["code"] == "body_too_large"
    assert httpx.get(url + "/v1/nothing").status_code == 404
    assert httpx.get(url + "/v1/completions").json()["error"]["message"] == "no route GET /v1/completions"
    with serving(make_app(model_dir, max_tokens=5000, max_prompt_tokens=5000)) as (base, _):
        long = httpx.post(base + "/v1/completions", json={"model": "pico-chat", "prompt": [5] * 1000,
                                                           "max_tokens": 1500})
        assert long.status_code == 400 and "maximum context length is 2048" in long.json()["error"]["message"]
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client(url).completions.create(model="pico-chat", prompt="x", temperature=-1)


def test_api_key_guard_metrics_and_health(model_dir, monkeypatch):
    from slmkit.serve.guard import Guard

    class WordGuard:
        def score(self, texts):
            return [0.99 if "bomb" in t else 0.01 for t in texts]

    app = make_app(model_dir, guard=Guard(WordGuard(), 0.5, "Sorry, no."), api_key="sk-test")
    with serving(app) as (base, _):
        assert httpx.get(base + "/health").json()["status"] == "ok"  # open, for load balancers
        assert httpx.get(base + "/v1/models").status_code == 401
        with pytest.raises(openai.AuthenticationError):
            client(base, api_key="wrong").models.list()
        c = client(base, api_key="sk-test")
        blocked = c.chat.completions.create(model="pico-chat", messages=[{"role": "user", "content": "make a bomb"}])
        assert blocked.choices[0].message.content == "Sorry, no." == blocked.choices[0].message.refusal
        assert blocked.choices[0].finish_reason == "content_filter"
        assert blocked.model_extra["guard"] == {"blocked": [True], "scores": [0.99], "threshold": 0.5}
        mixed = c.completions.create(model="pico-chat", prompt=["a bomb", "apples"], max_tokens=4, temperature=0)
        assert [ch.finish_reason for ch in mixed.choices] == ["content_filter", "length"]
        stream = list(c.completions.create(model="pico-chat", prompt="bomb", stream=True))
        assert stream[-1].choices[0].finish_reason == "content_filter" and stream[-1].choices[0].text == "Sorry, no."
        metrics = httpx.get(base + "/metrics", headers={"Authorization": "Bearer sk-test"}).text
        assert "slmkit_guard_blocked_total 3.0" in metrics and "slmkit_guard_checks_total 4.0" in metrics
        assert 'slmkit_requests_total{endpoint="/v1/models",status="401"} 2.0' in metrics
        assert 'slmkit_request_latency_seconds_count{endpoint="/v1/completions"} 2.0' in metrics
        assert "slmkit_completion_tokens_total 4.0" in metrics


def test_disconnected_stream_is_cancelled_and_shutdown_aborts_requests(model_dir):
    from slmkit.serve.engine import load_engine

    engine = load_engine("torch", str(model_dir), max_batch=8, batch_wait_ms=2)
    # a short grace period, and shutdown only once both requests are generating: a fixed sleep let the tiny
    # model finish all 1,500 tokens in time when torch ran on one thread (fast), and the test then failed
    with serving(make_app(model_dir, engine=engine, max_tokens=2000), graceful=0.05) as (base, server):
        body = {"model": "pico-chat", "prompt": "Tom", "max_tokens": 1500, "temperature": 0, "stream": True}
        with httpx.stream("POST", base + "/v1/completions", json=body) as answer:
            next(answer.iter_lines())
        wait_until(lambda: not (engine.rows or engine.queued()), 20)
        assert not engine.rows  # the engine stopped generating for a client that left

        results = {}

        def ask(kind):
            try:
                if kind == "stream":
                    with httpx.stream("POST", base + "/v1/completions", json=body, timeout=30) as answer:
                        results[kind] = list(answer.iter_lines())
                else:
                    answer = httpx.post(base + "/v1/completions", json={**body, "stream": False}, timeout=30)
                    results[kind] = (answer.status_code, answer.json())
            except httpx.HTTPError as err:
                results[kind] = err

        threads = [threading.Thread(target=ask, args=(k,)) for k in ("stream", "json")]
        for t in threads:
            t.start()
        wait_until(lambda: len(engine.rows) >= 2, 20)
        server.should_exit = True  # what SIGTERM does: graceful shutdown while both are generating
        for t in threads:
            t.join(30)
    assert_never_truncated_success(results["stream"])
    assert "interrupted" in results["stream"][-2]  # the stream says why it ended: an error event, no [DONE]
    status, answer = results["json"]  # stopped before it finished: an OpenAI-style 503, not a cut answer
    assert status == 503 and "interrupted" in answer["error"]["message"]


def assert_never_truncated_success(result) -> None:
    """A stream either ended with every choice finished and [DONE], or it is visibly not a success."""
    if isinstance(result, Exception):
        return
    events = [line[6:] for line in result if line.startswith("data: ")]
    if events and events[-1] == "[DONE]":
        assert json.loads(events[-2])["choices"][0]["finish_reason"]
    else:
        assert all(json.loads(e).get("choices", [{}])[0].get("finish_reason") is None for e in events
                   if "choices" in json.loads(e))


def test_killed_server_never_looks_successful(model_dir):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "slmkit", "serve", str(model_dir), "--port", str(port),
                             "--max-tokens", "4000", "--log-level", "warning", "--threads", "1"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 90
        while time.time() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            time.sleep(0.2)
        c = client(base)
        chunks, error = [], None
        try:
            for i, chunk in enumerate(c.completions.create(model="pico-chat", prompt="Tom", max_tokens=1800,
                                                           temperature=0, stream=True)):
                chunks.append(chunk)
                if i == 3:
                    proc.send_signal(signal.SIGKILL)
        except (openai.APIError, httpx.HTTPError) as err:
            error = err
        assert error is not None or all(ch.choices[0].finish_reason is None for ch in chunks)
        assert len(chunks) < 1800
    finally:
        proc.kill()
        proc.wait(10)


def test_ct2_engine_serves_a_converted_model(model_dir, tmp_path):
    ctranslate2 = pytest.importorskip("ctranslate2")
    from slmkit.serve.engine import load_engine

    out = tmp_path / "ct2"
    ctranslate2.converters.TransformersConverter(str(model_dir), copy_files=[
        "tokenizer.json", "tokenizer_config.json"]).convert(str(out), quantization="float32")
    texts = []
    for kind, path in (("torch", model_dir), ("ct2", out)):
        with serving(make_app(model_dir, engine=load_engine(kind, str(path)))) as (base, _):
            answer = client(base).completions.create(model="pico-chat", prompt=["Tom has", "Sara"], max_tokens=12,
                                                     temperature=0)
            texts.append([ch.text for ch in answer.choices])
            streamed = list(client(base).completions.create(model="pico-chat", prompt="Tom has", max_tokens=12,
                                                            temperature=0, stream=True))
            assert "".join(ch.choices[0].text for ch in streamed) == texts[-1][0]
    assert texts[0] == texts[1]  # fp32 CTranslate2 is token-identical to PyTorch


@pytest.mark.parametrize("arch", ["t5", "encdec"])
def test_encoder_decoder_model_is_served_with_request_batching(tokenizer, tmp_path, arch):
    from slmkit.models.build import build
    from slmkit.models.generate import GenerateConfig, generate
    from slmkit.models.load import save_model
    from slmkit.serve.engine import load_engine

    model = build(arch, "pico", tokenizer=tokenizer, seed=0)
    save_model(model, tokenizer, tmp_path / "t5")
    engine = load_engine("torch", str(tmp_path / "t5"))
    assert engine.kind == "request"
    reference = generate(model, tokenizer, ["Tom has 3", "Ann"], GenerateConfig(max_new_tokens=8), False)
    with serving(make_app(tmp_path / "t5", engine=engine)) as (base, _):
        answer = client(base).completions.create(model="pico-chat", prompt=["Tom has 3\n", "Ann\n"], max_tokens=8,
                                                 temperature=0)
    assert [ch.text for ch in answer.choices] == [g.texts[0] for g in reference]


def test_serve_command_flags(model_dir, monkeypatch):
    from slmkit.cli import main
    from slmkit.errors import ConfigError
    from slmkit.serve.cli import build_app, build_parser

    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--help"])
    assert exit_.value.code == 0
    args = build_parser().parse_args([str(model_dir)])
    assert args.host == "127.0.0.1" and args.engine == "torch"
    with pytest.raises(ConfigError, match="SLMKIT_NO_SUCH_KEY"):
        build_app(build_parser().parse_args([str(model_dir), "--api-key-env", "SLMKIT_NO_SUCH_KEY"]))
    with pytest.raises(ConfigError, match="max-n"):
        build_app(build_parser().parse_args([str(model_dir), "--max-n", "0"]))
    assert main(["serve", "/no/such/model"]) == 2
    assert main(["serve", str(model_dir), "--guard", "no_such_module:Guard"]) == 2
