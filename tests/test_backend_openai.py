"""The ``openai`` backend against a small scripted fake server: request mapping, concurrency and order,
retries with backoff on 429/5xx/connection errors/truncated bodies, timeouts, the on-disk cache and the
API key (read from the environment, never stored)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from slmkit.backends import make_backend
from slmkit.errors import ConfigError, ModelError
from slmkit.models.generate import GenerateConfig


class FakeServer:
    """Answers like an OpenAI server; ``script`` holds actions for the first requests (status codes,
    'sleep:<s>', 'truncate'), later requests succeed. Every request is logged."""

    def __init__(self, script=(), one_choice=False, delay=0.0):
        self.script = list(script)
        self.one_choice = one_choice
        self.delay = delay
        self.log: list[dict] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.log.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                    action = outer.script.pop(0) if outer.script else "ok"
                outer.act(self, action, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def act(self, handler, action, body):
        if isinstance(action, int):
            return self.send(handler, action, {"error": {"message": f"scripted {action}", "type": "x"}},
                             {"Retry-After": "0"} if action == 429 else {})
        if action.startswith("sleep:"):
            time.sleep(float(action.split(":")[1]))
        if action == "truncate":
            handler.send_response(200)
            handler.send_header("Content-Length", "1000")
            handler.end_headers()
            handler.wfile.write(b'{"choices": [')
            handler.close_connection = True
            return None
        time.sleep(self.delay)
        return self.send(handler, 200, self.answer(handler.path, body))

    def answer(self, path, body):
        n = 1 if self.one_choice else body["n"]
        prompt = body.get("prompt") or body["messages"][-1]["content"]
        choices = []
        for i in range(n):
            text = f"{prompt.strip()}|{body['seed']}|{i}"
            choice = {"message": {"role": "assistant", "content": text}} if "chat" in path else {"text": text}
            choices.append({"index": i, "finish_reason": "stop", **choice})
        return {"object": "x", "choices": choices[::-1], "usage": {"completion_tokens": 3 * n + 1}}

    @staticmethod
    def send(handler, status, obj, headers=None):
        data = json.dumps(obj).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            handler.send_header(k, v)
        handler.end_headers()
        handler.wfile.write(data)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake():
    servers = []

    def start(**kwargs):
        servers.append(FakeServer(**kwargs))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def backend(server, **kwargs):
    spec = {"kind": "openai", "model": "m", "base_url": server.url, "backoff": 0.01, "max_backoff": 0.05}
    return make_backend({**spec, **kwargs})


def test_completions_mapping_order_and_tokens(fake):
    server = fake(delay=0.02)
    b = backend(server, concurrency=4)
    prompts = [f"p{i}" for i in range(12)]
    cfg = GenerateConfig(max_new_tokens=7, temperature=0.5, top_p=0.9, n=2, stop=["\n\n"], seed=5)
    out = b.generate(prompts, cfg)
    assert [g.prompt for g in out] == prompts
    assert out[3].texts == ["p3|5|0", "p3|5|1"]  # choices re-sorted by index
    assert out[0].n_tokens == [4, 3]  # usage total 7 split over 2 choices
    body = server.log[0]["body"]
    assert server.log[0]["path"] == "/v1/completions" and server.log[0]["auth"] is None
    assert body["prompt"].endswith("\n") and body["max_tokens"] == 7 and body["n"] == 2
    assert (body["temperature"], body["top_p"], body["stop"], body["seed"]) == (0.5, 0.9, ["\n\n"], 5)


def test_chat_system_prompt_and_api_key_from_env(fake, monkeypatch):
    server = fake()
    monkeypatch.setenv("SLMKIT_TEST_KEY", "sk-secret")
    b = backend(server, api_key_env="SLMKIT_TEST_KEY", system_prompt="be brief")
    out = b.generate(["hello"], GenerateConfig(prompt_format="chat"))
    assert out[0].texts == ["hello|0|0"]
    log = server.log[0]
    assert log["path"] == "/v1/chat/completions" and log["auth"] == "Bearer sk-secret"
    assert log["body"]["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]
    monkeypatch.delenv("SLMKIT_TEST_KEY")
    with pytest.raises(ConfigError, match="SLMKIT_TEST_KEY"):
        b.generate(["hello"], GenerateConfig())


def test_retries_on_429_500_and_truncated_body(fake):
    server = fake(script=[429, 500, "truncate", 503])
    b = backend(server)
    out = b.generate(["x"], GenerateConfig())
    assert out[0].texts == ["x|0|0"]
    assert len(server.log) == 5 and b.requests_sent == 5


def test_client_error_fails_at_once_with_server_message(fake):
    server = fake(script=[400])
    with pytest.raises(ModelError, match="HTTP 400: scripted 400"):
        backend(server).generate(["x"], GenerateConfig())
    assert len(server.log) == 1


def test_gives_up_after_max_retries(fake):
    server = fake(script=[500] * 10)
    with pytest.raises(ModelError, match="failed after 3 attempts; last: HTTP 500"):
        backend(server, max_retries=2).generate(["x"], GenerateConfig())
    assert len(server.log) == 3


def test_backoff_grows_exponentially_with_jitter(fake):
    b = backend(fake(), backoff=1.0, max_backoff=5.0)
    delays = [b._delay(a, None) for a in (1, 2, 3, 4, 5) for _ in range(20)]
    assert 0.5 <= min(delays[:20]) and max(delays[:20]) <= 1.0
    assert 2.0 <= min(delays[40:60]) and max(delays[40:60]) <= 4.0
    assert max(delays) <= 5.0 and len(set(delays)) > 50  # capped, jittered
    assert b._delay(3, 0.25) == 0.25  # Retry-After wins


def test_timeout_is_retried_then_reported(fake):
    server = fake(script=["sleep:1.0"])
    out = backend(server, timeout=0.3).generate(["x"], GenerateConfig())
    assert out[0].texts == ["x|0|0"] and len(server.log) == 2
    slow = fake(script=["sleep:1.0"] * 3)
    with pytest.raises(ModelError, match="ReadTimeout"):
        backend(slow, timeout=0.2, max_retries=1).generate(["x"], GenerateConfig())


def test_connection_refused_is_retried_then_reported():
    b = make_backend({"kind": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1", "max_retries": 2,
                      "backoff": 0.01})
    with pytest.raises(ModelError, match="failed after 3 attempts; last: ConnectError"):
        b.generate(["x"], GenerateConfig())


def test_cache_hits_misses_and_corrupt_entries(fake, tmp_path, monkeypatch):
    server = fake()
    monkeypatch.setenv("SLMKIT_TEST_KEY", "sk-never-stored")
    b = backend(server, cache_dir=str(tmp_path / "cache"), api_key_env="SLMKIT_TEST_KEY", concurrency=8)
    prompts = [f"q{i}" for i in range(20)]
    first = b.generate(prompts, GenerateConfig(n=2))
    assert len(server.log) == 20
    again = backend(server, cache_dir=str(tmp_path / "cache"), api_key_env="SLMKIT_TEST_KEY")
    assert [g.texts for g in again.generate(prompts, GenerateConfig(n=2))] == [g.texts for g in first]
    assert len(server.log) == 20 and again.requests_sent == 0
    again.generate(prompts[:1], GenerateConfig(n=2, seed=1))  # another request: another key
    assert len(server.log) == 21
    files = sorted((tmp_path / "cache").rglob("*.json"))
    assert len(files) == 21 and not list((tmp_path / "cache").rglob("*.tmp"))
    assert all("sk-never-stored" not in f.read_text() for f in files)
    path, body = b.request("q0", GenerateConfig(n=2), 2, 0)
    b.cache_path(path, body).write_text("{trunc")
    assert b.generate(["q0"], GenerateConfig(n=2))[0].texts == first[0].texts
    assert len(server.log) == 22


def test_concurrent_writers_share_one_cache(fake, tmp_path):
    server = fake(delay=0.01)
    backends = [backend(server, cache_dir=str(tmp_path), concurrency=4) for _ in range(3)]
    outs: list = [None] * 3
    threads = [threading.Thread(target=lambda i=i: outs.__setitem__(i, backends[i].generate(
        [f"s{j}" for j in range(10)], GenerateConfig()))) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outs[0] == outs[1] == outs[2]
    for f in tmp_path.rglob("*.json"):
        assert json.loads(f.read_text())["response"]["choices"]


def test_server_ignoring_n_is_asked_again_with_new_seeds(fake):
    server = fake(one_choice=True)
    out = backend(server).generate(["x"], GenerateConfig(n=3, seed=10))
    assert out[0].texts == ["x|10|0", "x|11|0", "x|12|0"]
    assert [e["body"]["n"] for e in server.log] == [3, 2, 1]


def test_bad_backend_settings_are_config_errors():
    with pytest.raises(ConfigError, match="concurrency"):
        make_backend({"kind": "openai", "model": "m", "concurrency": 0})
    with pytest.raises(ConfigError, match="backend 'openai'"):
        make_backend({"kind": "openai", "model": "m", "no_such_option": 1})
