"""Load, batching and kill checks of ``slmkit serve`` with a pico model on loopback (issue 9 targets).

1. The official ``openai`` client: completions, chat and streaming against the server.
2. 1,000 requests at concurrency 32, 10% malformed or oversized (bad JSON, wrong types, out-of-range
   values, unknown model, oversized prompt and body, ...): no 5xx, no crash, every malformed request
   answered 4xx with an OpenAI error message, every valid one complete; p50/p99 latency and tokens/s.
3. Dynamic batching: generated tokens/s at concurrency 16 against one request at a time, same server.
4. Killing the server under load (SIGKILL, and SIGTERM with a short grace period): no client may see a
   truncated answer that looks successful (a 200 JSON missing a finish_reason, or a stream that ends
   cleanly without ``[DONE]`` or whose last choice chunk has no finish_reason while [DONE] came).

The server runs as a separate process (``python -m slmkit serve``) as a user would run it; all traffic
stays on 127.0.0.1 and every loop is bounded. Run: ``flock /tmp/slmkit-bench.lock python bench/serve_load.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import check, info, report  # noqa: E402

MODEL = "pico"
# One intra-op thread: a pico model gains nothing from two, and on this shared 2-core machine (load ~12 from
# other jobs) two OpenMP threads make every op wait for a descheduled thread (10x slower decoding measured).
# Both sides of the batching comparison run on the same server, so the setting does not favour either.
THREADS = 1


def build_model(folder: Path) -> Path:
    """A pico decoder with a BPE trained on built-in math rows, saved like a user's model."""
    from slmkit.data.tasks.math_word import generate as math_rows
    from slmkit.models.build import build
    from slmkit.models.load import save_model
    from slmkit.models.tokenizer import train_tokenizer

    rows = math_rows(400, seed=0, min_steps=1, max_steps=2, max_operand=20)
    tok = train_tokenizer([r["prompt"] + "\n" + r["completion"] for r in rows], vocab_size=300)
    save_model(build("decoder", "pico", tokenizer=tok, seed=0), tok, folder / MODEL)
    return folder / MODEL


class ServerProcess:
    """``slmkit serve`` in a subprocess on a free loopback port."""

    def __init__(self, model: Path, *extra: str):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "SLMKIT_QUIET": "1"}
        cmd = [sys.executable, "-m", "slmkit", "serve", str(model), "--port", str(self.port), "--log-level",
               "warning", "--max-tokens", "256", "--max-prompt-tokens", "512", "--threads", str(THREADS), *extra]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._wait_ready()

    def _wait_ready(self) -> None:
        import httpx

        deadline = time.time() + 180
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError("server did not become ready in 180 s")

    def alive(self) -> bool:
        import httpx

        try:
            return self.proc.poll() is None and httpx.get(self.url + "/health", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)


def openai_client_check(url: str) -> bool:
    import openai

    c = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    done = c.completions.create(model=MODEL, prompt="Tom has 3 apples", max_tokens=8, temperature=0)
    chat = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=8)
    stream = list(c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}],
                                            max_tokens=8, stream=True))
    return bool(done.choices[0].finish_reason and chat.choices[0].finish_reason
                and stream[-1].choices[0].finish_reason)


def malformed(i: int) -> tuple[str, str, bytes]:
    """The i-th bad request: (kind, path, raw body)."""
    ok = {"model": MODEL, "prompt": "Tom has 3 apples", "max_tokens": 8}
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    kinds = [
        ("bad_json", "/v1/completions", b'{"model": "pico", "prompt": '),
        ("not_an_object", "/v1/completions", b"[1, 2, 3]"),
        ("unknown_model", "/v1/completions", {**ok, "model": "gpt-4o"}),
        ("temperature_range", "/v1/completions", {**ok, "temperature": 9.5}),
        ("top_p_type", "/v1/completions", {**ok, "top_p": "high"}),
        ("n_too_large", "/v1/completions", {**ok, "n": 1000}),
        ("max_tokens_too_large", "/v1/completions", {**ok, "max_tokens": 10**6}),
        ("max_tokens_negative", "/v1/chat/completions", {**chat, "max_tokens": -3}),
        ("oversized_prompt", "/v1/completions", {**ok, "prompt": "seven apples " * 2000}),
        ("oversized_body", "/v1/completions", {**ok, "prompt": "x" * (3 << 19)}),
        ("missing_messages", "/v1/chat/completions", {"model": MODEL}),
        ("bad_role", "/v1/chat/completions", {**chat, "messages": [{"role": "wizard", "content": "x"}]}),
        ("prompt_type", "/v1/completions", {**ok, "prompt": {"text": "x"}}),
    ]
    kind, path, body = kinds[i % len(kinds)]
    return kind, path, body if isinstance(body, bytes) else json.dumps(body).encode()


def valid(i: int, rng: random.Random) -> tuple[str, str, bytes, bool]:
    """The i-th good request: (kind, path, body, stream)."""
    stream = i % 3 == 0
    base = {"model": MODEL, "max_tokens": rng.randint(8, 32), "temperature": rng.choice([0.0, 0.8]),
            "stream": stream, "seed": i, **({"stream_options": {"include_usage": True}} if stream else {})}
    if i % 2:
        body = {**base, "messages": [{"role": "user", "content": f"Ann has {i % 50} pens. How many?"}]}
        return "chat", "/v1/chat/completions", json.dumps(body).encode(), stream
    body = {**base, "prompt": f"Tom has {i % 40} apples and buys {i % 7} more."}
    return "completion", "/v1/completions", json.dumps(body).encode(), stream


async def send(client, path: str, body: bytes, stream: bool) -> dict:
    """One request; returns status, latency, tokens and whether the answer was complete."""
    import httpx

    start = time.perf_counter()
    out = {"status": None, "tokens": 0, "complete": False, "error": None, "message": ""}
    try:
        if stream:
            async with client.stream("POST", path, content=body, headers={"Content-Type": "application/json"}) as r:
                out["status"] = r.status_code
                if r.status_code != 200:
                    out["message"] = json.loads(await r.aread())["error"]["message"]
                else:
                    out.update(_stream_verdict([line async for line in r.aiter_lines() if line.startswith("data: ")]))
        else:
            r = await client.post(path, content=body, headers={"Content-Type": "application/json"})
            out["status"] = r.status_code
            data = r.json()
            if r.status_code == 200:
                out["complete"] = all(c.get("finish_reason") for c in data["choices"])
                out["tokens"] = data["usage"]["completion_tokens"]
            else:
                out["message"] = (data.get("error") or {}).get("message", "")
    except (httpx.HTTPError, ValueError) as err:
        out["error"] = f"{type(err).__name__}: {err}"
    out["latency"] = time.perf_counter() - start
    return out


def _stream_verdict(lines: list[str]) -> dict:
    """Complete = [DONE] last and every choice's final chunk carries a finish_reason; an ``error`` event
    is a visible failure (the openai client raises on it)."""
    payloads = [line[6:] for line in lines]
    done = bool(payloads) and payloads[-1] == "[DONE]"
    reasons, tokens, error = {}, 0, None
    for p in payloads[:-1] if done else payloads:
        obj = json.loads(p)
        error = error or (obj.get("error") or {}).get("message")
        tokens = (obj.get("usage") or {}).get("completion_tokens", tokens)
        for c in obj.get("choices", []):
            if c.get("finish_reason"):
                reasons[c["index"]] = c["finish_reason"]
    return {"complete": done and bool(reasons) and not error, "tokens": tokens, "error": error}


async def run_load(url: str, jobs: list[tuple[str, str, bytes, bool]], concurrency: int) -> tuple[list, float]:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    queue: asyncio.Queue = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)
    results: list = []

    async def worker(client) -> None:
        while not queue.empty():
            kind, path, body, stream = queue.get_nowait()
            results.append({"kind": kind, **await send(client, path, body, stream)})

    start = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return results, time.perf_counter() - start


def load_test(url: str) -> list:
    rng = random.Random(0)
    jobs = [(*malformed(i), False) if i % 10 == 9 else valid(i, rng) for i in range(1000)]
    results, wall = asyncio.run(run_load(url, jobs, 32))
    bad = [r for r in results if r["kind"] not in ("chat", "completion")]
    good = [r for r in results if r["kind"] in ("chat", "completion")]
    five = sum(1 for r in results if (r["status"] or 0) >= 500 or r["error"])
    clear = sum(1 for r in bad if 400 <= (r["status"] or 0) < 500 and len(r["message"]) > 10)
    lat = sorted(r["latency"] for r in good)
    tokens = sum(r["tokens"] for r in good)
    by_kind = sorted({(r["kind"], r["status"], r["message"][:70]) for r in bad})
    print("malformed requests and the answers they got:")
    for kind, status, message in by_kind:
        print(f"  {kind:<22} {status}  {message}")
    return [
        check("load: requests answered 5xx or failed", five, "<=", 0),
        check("load: malformed answered 4xx + message (%)", 100.0 * clear / len(bad), ">=", 100.0),
        check("load: valid requests complete (%)", 100.0 * sum(r["complete"] and r["status"] == 200
                                                               for r in good) / len(good), ">=", 100.0),
        info("load: requests (valid + malformed)", f"{len(good)} + {len(bad)}"),
        info("load: p50 latency (s)", round(statistics.median(lat), 4)),
        info("load: p99 latency (s)", round(lat[int(0.99 * (len(lat) - 1))], 4)),
        info("load: generated tokens/s", round(tokens / wall, 1)),
        info("load: wall time (s)", round(wall, 1)),
    ]


def batching_test(url: str) -> list:
    """Same greedy completions (fixed length budget) one at a time, then 16 at a time."""
    def jobs(count: int) -> list:
        return [("completion", "/v1/completions", json.dumps({"model": MODEL, "prompt": f"Sara has {i} pens",
                                                               "max_tokens": 32, "temperature": 0}).encode(), False)
                for i in range(count)]

    asyncio.run(run_load(url, jobs(8), 4))  # warm-up
    seq, seq_wall = asyncio.run(run_load(url, jobs(24), 1))
    par, par_wall = asyncio.run(run_load(url, jobs(96), 16))
    seq_tps = sum(r["tokens"] for r in seq) / seq_wall
    par_tps = sum(r["tokens"] for r in par) / par_wall
    return [info("batching: tokens/s one at a time", round(seq_tps, 1)),
            info("batching: tokens/s at concurrency 16", round(par_tps, 1)),
            check("batching: concurrency-16 / one-at-a-time throughput", par_tps / seq_tps, ">=", 3.0, "x")]


def kill_test(model: Path, sig: int, label: str) -> list:
    """Long requests (half streamed) in flight, then the signal; count answers that look successful
    but are truncated."""
    server = ServerProcess(model, "--shutdown-grace", "1")
    jobs = []
    for i in range(48):
        body = {"model": MODEL, "prompt": f"Tom has {i} apples", "max_tokens": 200, "temperature": 0.7,
                "stream": i % 2 == 0, "seed": i}
        if i % 4 == 1:
            body["max_tokens"] = 4  # some finish before the signal: they must stay complete
        jobs.append(("kill", "/v1/completions", json.dumps(body).encode(), body["stream"]))

    async def scenario() -> list:
        task = asyncio.create_task(run_load(server.url, jobs, 48))
        await asyncio.sleep(2.0)
        server.proc.send_signal(sig)
        return (await task)[0]

    try:
        results = asyncio.run(scenario())
    finally:
        server.stop()
    fake = sum(1 for r in results if r["status"] == 200 and not r["error"] and not r["complete"])
    complete = sum(1 for r in results if r["complete"])
    failed = len(results) - complete
    return [check(f"kill ({label}): truncated answers that look successful", fake, "<=", 0),
            info(f"kill ({label}): complete / visibly failed", f"{complete} / {failed}")]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        model = build_model(Path(tmp))
        server = ServerProcess(model)
        try:
            records = [check("openai client: completions, chat, streaming", float(openai_client_check(server.url)),
                             ">=", 1.0)]
            records += load_test(server.url)
            records.append(check("load: server still healthy afterwards", float(server.alive()), ">=", 1.0))
            records += batching_test(server.url)
        finally:
            server.stop()
        records += kill_test(model, signal.SIGKILL, "SIGKILL")
        records += kill_test(model, signal.SIGTERM, "SIGTERM, 1 s grace")
    report("serve_load", records)


if __name__ == "__main__":
    main()
