"""A minimal OpenAI-compatible server that wraps any slmkit backend and waits a fixed latency per request.

Benchmark and test code only, not part of slmkit (``slmkit serve`` is the real server): it stands in for a
remote teacher (an LLM API answers after hundreds of milliseconds whatever the client does), so that the
effect of the synth engine's concurrency can be measured on a CPU-only machine. The wait is an
``asyncio.sleep``, so concurrent requests overlap as they would on a real server; the backend's own work
runs in a worker thread.

    python bench/latency_server.py --backend '{"kind": "rule_math"}' --latency 0.05 --port 8123

Serves ``GET /v1/models``, ``POST /v1/completions`` and ``POST /v1/chat/completions`` (non-streaming;
``prompt``/``messages``, ``n``, ``max_tokens``, ``temperature``, ``top_p``, ``stop``, ``seed``) on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any


def make_app(backend: Any, latency: float, model: str) -> Any:
    from fastapi import FastAPI
    from fastapi.concurrency import run_in_threadpool

    from slmkit.models.generate import GenerateConfig

    app = FastAPI()
    served = {"requests": 0}

    async def answer(prompt: str, body: dict[str, Any]) -> list[str]:
        served["requests"] += 1
        await asyncio.sleep(latency)
        stop = body.get("stop") or []
        cfg = GenerateConfig(max_new_tokens=int(body.get("max_tokens") or 16), n=int(body.get("n") or 1),
                             temperature=float(body.get("temperature") or 0.0), top_p=float(body.get("top_p") or 1.0),
                             seed=int(body.get("seed") or 0), stop=[stop] if isinstance(stop, str) else list(stop))
        generations = await run_in_threadpool(backend.generate, [prompt], cfg)
        return generations[0].texts

    def reply(kind: str, texts: list[str], chat: bool) -> dict[str, Any]:
        choices = [{"index": i, "finish_reason": "stop",
                    **({"message": {"role": "assistant", "content": t}} if chat else {"text": t})}
                   for i, t in enumerate(texts)]
        tokens = sum(len(t.split()) for t in texts)
        return {"id": f"bench-{time.time_ns()}", "object": kind, "created": int(time.time()), "model": model,
                "choices": choices, "usage": {"prompt_tokens": 0, "completion_tokens": tokens, "total_tokens": tokens}}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model, "object": "model", "owned_by": "bench"}]}

    @app.get("/requests")
    async def requests() -> dict[str, int]:
        return served

    @app.post("/v1/completions")
    async def completions(body: dict[str, Any]) -> dict[str, Any]:
        prompt = body["prompt"][0] if isinstance(body["prompt"], list) else body["prompt"]
        return reply("text_completion", await answer(prompt, body), chat=False)

    @app.post("/v1/chat/completions")
    async def chat(body: dict[str, Any]) -> dict[str, Any]:
        return reply("chat.completion", await answer(body["messages"][-1]["content"], body), chat=True)

    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    from slmkit.backends import make_backend

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default='{"kind": "rule_math"}', help="backend spec as JSON")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds added to every request")
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--model", default="teacher", help="model id the server reports")
    args = parser.parse_args(argv)
    app = make_app(make_backend(json.loads(args.backend)), args.latency, args.model)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
