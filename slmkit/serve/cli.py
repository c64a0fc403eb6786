"""The ``slmkit serve`` command: load a model into an engine and serve it over HTTP with uvicorn.

Binds 127.0.0.1 unless told otherwise; the API key is read from the environment variable named by
``--api-key-env`` (never from the command line, where other users could read it in the process list).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from slmkit.errors import ConfigError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def build_parser() -> argparse.ArgumentParser:
    from slmkit.serve.engine import ENGINES

    p = argparse.ArgumentParser(prog="slmkit serve", description="Serve a model over an OpenAI-compatible "
                                "HTTP API (/v1/completions, /v1/chat/completions, /v1/models, /health, /metrics).")
    p.add_argument("model", help="model folder or hub id (a CTranslate2 folder with --engine ct2)")
    p.add_argument("--engine", choices=sorted(ENGINES), default="torch", help="model runtime (default: torch)")
    p.add_argument("--tokenizer", help="tokenizer folder or hub id (default: the model's)")
    p.add_argument("--served-model-name", help="model id clients send (default: the model folder's name)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key-env", help="environment variable holding the API key clients must send")
    p.add_argument("--max-body-bytes", type=int, default=1 << 20, help="largest request body (default: 1 MiB)")
    p.add_argument("--max-prompt-tokens", type=int, default=4096, help="longest prompt in tokens")
    p.add_argument("--max-tokens", type=int, default=1024, help="largest max_tokens a request may ask for")
    p.add_argument("--max-n", type=int, default=8, help="largest n (choices per prompt)")
    p.add_argument("--max-queue", type=int, default=1024, help="waiting requests before answering 503")
    p.add_argument("--request-timeout", type=float, default=600.0, help="seconds before a request fails with 504")
    p.add_argument("--max-batch", type=int, default=32, help="rows (choices) decoded together")
    p.add_argument("--batch-wait-ms", type=float, default=5.0, help="how long an idle engine gathers a batch")
    p.add_argument("--scheduler", choices=["auto", "continuous", "request"], default="auto",
                   help="torch engine batching: continuous (decoder-only) or request-level (default: auto)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads per forward pass (0: the runtime's "
                   "default; 1 is best for tiny models or a busy machine)")
    p.add_argument("--device", default="cpu", help="ct2 engine device (cpu or cuda)")
    p.add_argument("--compute-type", default="default", help="ct2 engine compute type (int8, float32, ...)")
    p.add_argument("--guard", help="guard folder (slmkit guard stage) or module:factory returning a guard")
    p.add_argument("--guard-threshold", type=float, help="refuse prompts whose guard score reaches this")
    p.add_argument("--refusal", help="text answered to refused prompts")
    p.add_argument("--shutdown-grace", type=float, default=10.0, help="seconds in-flight requests may finish "
                   "after SIGTERM before they are ended with an error")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def uvicorn_server(app: Any, engine: Any, host: str, port: int, grace: float = 10.0,
                   log_level: str = "info") -> Any:
    """A uvicorn server whose graceful shutdown lets requests in flight finish for ``grace`` seconds,
    then stops the engine so that the rest end with an error (a 503 or a stream ``error`` event) before
    uvicorn closes their connections, instead of being cut off or answered with a bare 500."""
    import asyncio

    import uvicorn

    class EngineServer(uvicorn.Server):
        async def shutdown(self, sockets: Any = None) -> None:
            asyncio.get_running_loop().call_later(grace, engine.stop)
            await super().shutdown(sockets)

    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=log_level == "debug",
                            timeout_graceful_shutdown=grace + 5)
    return EngineServer(config)


def build_app(args: argparse.Namespace) -> tuple[Any, Any]:
    """Engine and app (guard in front) from parsed arguments; the engine starts with the app."""
    from slmkit.serve.app import ServeSettings
    from slmkit.serve.engine import load_engine
    from slmkit.serve.guard import load_guard
    from slmkit.serve.routes import create_app

    for name in ("max_body_bytes", "max_prompt_tokens", "max_tokens", "max_n", "max_queue", "max_batch"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            raise ConfigError(f"--api-key-env: environment variable '{args.api_key_env}' is not set")
    guard = load_guard(args.guard, args.guard_threshold, args.refusal) if args.guard else None
    engine = load_engine(args.engine, args.model, tokenizer=args.tokenizer, scheduler=args.scheduler,
                         max_batch=args.max_batch, batch_wait_ms=args.batch_wait_ms, device=args.device,
                         compute_type=args.compute_type, threads=args.threads)
    settings = ServeSettings(model_name=args.served_model_name or Path(args.model.rstrip("/")).name,
                             api_key=api_key, max_body_bytes=args.max_body_bytes,
                             max_prompt_tokens=args.max_prompt_tokens, max_tokens=args.max_tokens,
                             max_n=args.max_n, max_queue=args.max_queue, request_timeout=args.request_timeout)
    return create_app(engine, settings, guard), engine


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.host not in LOOPBACK and not args.api_key_env:
        logging.getLogger("slmkit.serve").warning(
            "serving on %s without an API key: anyone who can reach this address can use the model", args.host)
    app, engine = build_app(args)
    uvicorn_server(app, engine, args.host, args.port, args.shutdown_grace, args.log_level).run()
    return 0
