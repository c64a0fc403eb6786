"""The ``openai`` backend: any OpenAI-compatible server (``slmkit serve``, vLLM, llama.cpp's server, the
OpenAI API) as a teacher, judge or grader behind the same ``generate(prompts, GenerateConfig)`` interface.

``prompt_format: plain`` posts ``/completions`` with the prompt formatted exactly as the ``local`` backend
formats it (``format_prompt``: the text and a newline), so a model served by ``slmkit serve`` reads the
same tokens through either backend; ``chat`` posts ``/chat/completions`` with one user turn (and an
optional system prompt) and lets the server apply the model's chat template. ``n``, ``temperature``,
``top_p``, ``max_new_tokens`` (as ``max_tokens``), ``stop`` and ``seed`` map onto the request fields.

Prompts run concurrently on a thread pool (``concurrency`` requests in flight per ``generate`` call). One
HTTP client (connection pool) lives as long as the backend and is shared by every call and thread: building
a client costs ~30 ms of CPU (TLS context) under the GIL, which capped many concurrent single-prompt calls
at ~2.5x sequential, and keep-alive connections are reused across calls. A request that meets a connection error, a timeout, a truncated body or HTTP 408/409/429/5xx is
retried with exponential backoff and jitter (honouring ``Retry-After``); other 4xx answers fail at once
with the server's message. With ``cache_dir`` set, each answer is stored under the sha256 of its request
(URL and JSON body, never the API key) by an atomic rename, so concurrent writers cannot leave a partial
file and a re-run costs no requests. The API key is read from the environment variable named by
``api_key_env`` at call time; it is never written anywhere.

Reads: nothing local but the cache. Writes: ``<cache_dir>/<hash[:2]>/<hash>.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from slmkit.errors import ConfigError, ModelError

RETRY_STATUS = frozenset({408, 409, 425, 429})  # plus every 5xx


class OpenAIBackend:
    """Client of an OpenAI-compatible HTTP server (see the module docstring for the behaviour)."""

    def __init__(self, model: str, base_url: str = "http://127.0.0.1:8000/v1", api_key_env: str | None = None,
                 concurrency: int = 8, timeout: float = 120.0, max_retries: int = 6, backoff: float = 0.5,
                 max_backoff: float = 30.0, cache_dir: str | None = None, system_prompt: str | None = None,
                 extra_body: dict[str, Any] | None = None):
        if concurrency < 1 or timeout <= 0 or max_retries < 0 or backoff < 0:
            raise ConfigError("backend openai: concurrency >= 1, timeout > 0, max_retries >= 0 and "
                              "backoff >= 0 are required")
        self.name = f"openai:{model}@{base_url}"
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.system_prompt = system_prompt
        self.extra_body = dict(extra_body or {})
        self.requests_sent = 0  # HTTP attempts, retries included (cache hits send none)
        self._client: Any = None
        self._client_lock = threading.Lock()

    def client(self) -> Any:
        """The shared ``httpx.Client``, made on first use (thread-safe; its pool grows with the callers' threads)."""
        import httpx

        with self._client_lock:
            if self._client is None:
                # no cap on connections: in-flight requests are already bounded by the callers' thread pools
                limits = httpx.Limits(max_connections=None, max_keepalive_connections=self.concurrency)
                timeout = httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0))
                self._client = httpx.Client(base_url=self.base_url, timeout=timeout, limits=limits)
            return self._client

    def generate(self, prompts: list[str], cfg: Any) -> list[Any]:
        """One ``Generation`` per prompt, in order; the first prompt that fails for good raises ModelError."""
        from slmkit.progress import progress

        client, headers = self.client(), self._headers()
        results: list[Any] = [None] * len(prompts)
        with ThreadPoolExecutor(self.concurrency) as pool, progress(transient=True) as bar:
            task = bar.add_task(f"querying {self.model}", total=len(prompts), info="")
            futures = {pool.submit(self._generate_one, client, headers, p, cfg): i for i, p in enumerate(prompts)}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)  # so the bar moves as answers arrive
                for future in done:
                    if future.exception() is not None:
                        for other in pending:
                            other.cancel()
                        raise future.exception()  # type: ignore[misc]
                    results[futures[future]] = future.result()
                    bar.advance(task)
        return results

    def _headers(self) -> dict[str, str]:
        if not self.api_key_env:
            return {}
        key = os.environ.get(self.api_key_env)
        if not key:
            raise ConfigError(f"backend openai: environment variable '{self.api_key_env}' (api_key_env) is not set")
        return {"Authorization": f"Bearer {key}"}

    def request(self, prompt: str, cfg: Any, n: int, seed: int) -> tuple[str, dict[str, Any]]:
        """The endpoint path and JSON body for ``n`` samples of one prompt."""
        from slmkit.data.format import format_prompt

        body: dict[str, Any] = {"model": self.model, "max_tokens": cfg.max_new_tokens,
                                "temperature": cfg.temperature, "top_p": cfg.top_p, "n": n, "seed": seed}
        if cfg.stop:
            body["stop"] = list(cfg.stop)
        if cfg.prompt_format == "chat":
            messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
            body["messages"] = messages + [{"role": "user", "content": prompt}]
            path = "/chat/completions"
        else:
            body["prompt"] = format_prompt(None, prompt, cfg.prompt_format)
            path = "/completions"
        return path, {**body, **self.extra_body}

    def _generate_one(self, client: Any, headers: dict[str, str], prompt: str, cfg: Any) -> Any:
        """All ``cfg.n`` samples of one prompt; servers that ignore ``n`` (llama.cpp) are asked again."""
        from slmkit.models.generate import Generation, cut_at_stop

        texts: list[str] = []
        counts: list[int] = []
        while len(texts) < cfg.n:
            path, body = self.request(prompt, cfg, cfg.n - len(texts), cfg.seed + len(texts))
            new_texts, new_counts = parse_choices(self._cached_post(client, headers, path, body), self.name)
            texts += [cut_at_stop(t, list(cfg.stop)) for t in new_texts]
            counts += new_counts
        return Generation(prompt, texts[:cfg.n], counts[:cfg.n])

    def cache_path(self, path: str, body: dict[str, Any]) -> Path | None:
        """Where the answer to this request is cached (None without a cache)."""
        if self.cache_dir is None:
            return None
        blob = json.dumps({"url": self.base_url + path, "body": body}, sort_keys=True, ensure_ascii=False)
        digest = hashlib.sha256(blob.encode("utf-8")).hexdigest()
        return self.cache_dir / digest[:2] / f"{digest}.json"

    def _cached_post(self, client: Any, headers: dict[str, str], path: str, body: dict[str, Any]) -> dict[str, Any]:
        from slmkit.artifacts import atomic_write_json

        file = self.cache_path(path, body)
        if file is not None and file.exists():
            try:
                return json.loads(file.read_text(encoding="utf-8"))["response"]
            except (ValueError, KeyError, OSError):
                pass  # an unreadable entry is fetched again and overwritten
        response = self._post(client, headers, path, body)
        if file is not None:
            atomic_write_json(file, {"url": self.base_url + path, "request": body, "response": response})
        return response

    def _post(self, client: Any, headers: dict[str, str], path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST with retries on transient failures; returns the parsed JSON answer."""
        import httpx

        problem, retry_after = "", None
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self._delay(attempt, retry_after))
                retry_after = None
            self.requests_sent += 1
            try:
                answer = client.post(path, json=body, headers=headers)  # the key is read per call, never kept
            except httpx.TransportError as err:  # refused, reset, timed out, truncated
                problem = f"{type(err).__name__}: {err}"
                continue
            if answer.status_code == 200:
                try:
                    data = answer.json()
                except ValueError:
                    problem = "HTTP 200 with a body that is not JSON"
                    continue
                if isinstance(data, dict) and isinstance(data.get("choices"), list):
                    return data
                raise ModelError(f"{self.name}{path}: answer has no 'choices' list: {str(data)[:200]}")
            problem = f"HTTP {answer.status_code}: {error_message(answer)}"
            if answer.status_code not in RETRY_STATUS and answer.status_code < 500:
                raise ModelError(f"{self.name}{path}: {problem}")
            retry_after = _retry_after(answer)
        raise ModelError(f"{self.name}{path}: failed after {self.max_retries + 1} attempts; last: {problem}")

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with jitter (half fixed, half random) so that clients do not retry in step."""
        if retry_after is not None:
            return min(retry_after, self.max_backoff)
        delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        return delay / 2 + random.uniform(0, delay / 2)


def parse_choices(data: dict[str, Any], where: str) -> tuple[list[str], list[int]]:
    """Texts (in choice order) and generated-token counts of a completions or chat completions answer.

    OpenAI reports only the total ``usage.completion_tokens``; it is exact per choice when n = 1 and is
    split evenly (remainder to the first choices) otherwise; 0 when a server reports no usage.
    """
    try:
        choices = sorted(data["choices"], key=lambda c: c.get("index", 0))
        texts = [(c["message"].get("content") or "") if "message" in c else c["text"] for c in choices]
    except (KeyError, TypeError, AttributeError) as err:
        raise ModelError(f"{where}: malformed choice in answer ({err!r}): {str(data)[:200]}") from None
    if not texts:
        raise ModelError(f"{where}: answer has no choices")
    total = int((data.get("usage") or {}).get("completion_tokens") or 0)
    share, extra = divmod(total, len(texts))
    return texts, [share + (i < extra) for i in range(len(texts))]


def error_message(answer: Any) -> str:
    """The ``error.message`` of an OpenAI-style error body, or the start of the raw body."""
    try:
        data = answer.json()
        return str(data["error"]["message"] if isinstance(data.get("error"), dict) else data.get("error", data))
    except (ValueError, AttributeError, KeyError, TypeError):
        return answer.text[:300]


def _retry_after(answer: Any) -> float | None:
    """Seconds from a ``Retry-After`` header given as a number (HTTP dates are ignored)."""
    try:
        return max(0.0, float(answer.headers.get("retry-after", "")))
    except ValueError:
        return None
