"""How synthetic-data pipelines call teachers: concurrency, batching, an on-disk cache and a resumable journal.

Pipelines process *items* (one seed problem, one task x document type x format cell) with plain Python
control flow, loops included, calling ``Teacher.ask(role, prompt, gen)``. The machinery here makes that
fast and safe for every backend (``local``, ``openai``, ``rule_math``), at the pipeline level:

* **Concurrency and batching** -- items run on a thread pool; their teacher calls meet in a
  :class:`Batcher`, which sends each backend at most ``concurrency`` calls at once and packs the requests
  that are waiting (same generation settings) into calls of up to ``batch_size`` prompts. An HTTP teacher
  wants many small calls in flight; a local model wants few large batches; both are one setting away.
* **Cache** -- every answer is stored under sha256(backend name, prompt, generation settings) in
  ``<cache>/<hh>/<hash>.json`` by write-to-temp-then-rename, so a kill never leaves a partial entry and a
  re-run (or a resume) costs no teacher calls for what was already asked.
* **Journal** -- each finished item is appended to ``journal.jsonl`` (flushed and fsynced) with its id.
  On resume, items already in the journal are skipped; a torn last line from a kill is ignored and
  duplicate ids keep their first record, so no row is lost or repeated. The journal's first line records a
  key of the settings that shape items; a journal made with other settings is set aside, not mixed in.

Writes: the cache folder and the journal. Reads: both, on resume.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from slmkit.errors import ModelError


def text_hash(text: str) -> str:
    """Short content hash used in item ids and row provenance."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def gen_key(gen: Any) -> str:
    """Generation settings as a canonical string (the part of a cache key beside backend and prompt)."""
    return json.dumps(asdict(gen), sort_keys=True)


class Cache:
    """Answers on disk keyed by (backend, prompt, generation settings)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def key(self, backend: str, prompt: str, gen: Any) -> str:
        blob = json.dumps({"backend": backend, "prompt": prompt, "gen": gen_key(gen)}, sort_keys=True)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> list[str] | None:
        try:
            texts = json.loads(self.path(key).read_text(encoding="utf-8"))["texts"]
        except (OSError, ValueError, KeyError, TypeError):
            return None  # absent or unreadable: ask again and overwrite
        return texts if isinstance(texts, list) else None

    def put(self, key: str, texts: list[str], backend: str, prompt: str) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
        # No fsync: the rename is atomic against a killed process, and an entry lost to a power cut is
        # only a cache miss. (The journal, which holds results, is fsynced.)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"backend": backend, "prompt_hash": text_hash(prompt), "texts": texts}, handle)
        os.replace(tmp, path)


@dataclass(eq=False)  # requests are compared by identity
class _Request:
    prompt: str
    gen: Any
    future: Future


class Batcher:
    """At most ``slots`` backend calls in flight; each call packs up to ``batch_size`` waiting requests."""

    def __init__(self, backend: Any, slots: int, batch_size: int):
        self.backend = backend
        self.slots = max(1, min(slots, getattr(backend, "max_concurrency", None) or slots))
        self.batch_size = max(1, batch_size)
        self.free = self.slots
        self.queue: list[_Request] = []
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(self.slots, thread_name_prefix="synth-backend")
        self.calls = 0

    def generate(self, prompt: str, gen: Any) -> list[str]:
        request = _Request(prompt, gen, Future())
        with self.lock:
            self.queue.append(request)
        self._dispatch()
        return request.future.result()

    def _dispatch(self) -> None:
        while True:
            with self.lock:
                if not self.free or not self.queue:
                    return
                key = gen_key(self.queue[0].gen)
                batch = [r for r in self.queue if gen_key(r.gen) == key][:self.batch_size]
                self.queue = [r for r in self.queue if r not in batch]
                self.free -= 1
                self.calls += 1
            self.pool.submit(self._run, batch)

    def _run(self, batch: list[_Request]) -> None:
        try:
            n = batch[0].gen.n
            out = self.backend.generate([r.prompt for r in batch], batch[0].gen)
            if len(out) != len(batch) or any(len(g.texts) != n for g in out):
                raise ModelError(f"backend {self.backend.name} answered {[len(g.texts) for g in out]} samples "
                                 f"for {len(batch)} prompts of {n} samples each")
            for request, generation in zip(batch, out):
                request.future.set_result(list(generation.texts))
        except BaseException as err:  # every waiting item sees the failure
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(err)
        finally:
            with self.lock:
                self.free += 1
            self._dispatch()

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class Teacher:
    """Role calls through per-role backends, the cache and the batchers; safe to call from many threads."""

    def __init__(self, backends: dict[str, Any], default: Any, cache: Cache | None, concurrency: int,
                 batch_size: int):
        self.default = default
        self.backends = backends
        self.cache = cache
        self.batchers = {id(b): Batcher(b, concurrency, batch_size) for b in [default, *backends.values()]}
        self.counts = {"calls": 0, "cache_hits": 0}
        self.lock = threading.Lock()

    def backend(self, role: str) -> Any:
        return self.backends.get(role, self.default)

    def ask(self, role: str, prompt: str, gen: Any) -> list[str]:
        """``gen.n`` answers of the ``role`` backend to ``prompt``."""
        backend = self.backend(role)
        key = self.cache.key(backend.name, prompt, gen) if self.cache else ""
        texts = self.cache.get(key) if self.cache else None
        with self.lock:
            self.counts["calls"] += 1
            self.counts["cache_hits"] += texts is not None
        if texts is None:
            texts = self.batchers[id(backend)].generate(prompt, gen)
            if self.cache:
                self.cache.put(key, texts, backend.name, prompt)
        return texts

    def close(self) -> None:
        for batcher in self.batchers.values():
            batcher.close()


class Journal:
    """Append-only record of finished items (``{"id": ..., ...}`` per line), fsynced line by line."""

    def __init__(self, path: str | Path, key: str):
        self.path = Path(path)
        self.key = key
        self.lock = threading.Lock()

    def load(self) -> dict[str, dict[str, Any]]:
        """Records of a previous run with the same key (first record per id); starts a new journal otherwise."""
        records: dict[str, dict[str, Any]] = {}
        lines = self.path.read_text(encoding="utf-8").splitlines() if self.path.exists() else []
        header = _json_or_none(lines[0]) if lines else None
        if not header or header.get("journal_key") != self.key:
            if self.path.exists():
                os.replace(self.path, self.path.with_name(self.path.name + ".stale"))
            self._write_line({"journal_key": self.key})
            return records
        for line in lines[1:]:
            record = _json_or_none(line)  # None: the torn tail of a killed write
            if record and "id" in record:
                records.setdefault(record["id"], record)
        return records

    def append(self, record: dict[str, Any]) -> None:
        self._write_line(record)

    def _write_line(self, record: dict[str, Any]) -> None:
        data = json.dumps(record, ensure_ascii=False) + "\n"
        with self.lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a+", encoding="utf-8") as handle:
                handle.seek(0, os.SEEK_END)
                if handle.tell():  # a killed writer may have left a line without its newline
                    handle.seek(handle.tell() - 1)
                    if handle.read(1) != "\n":
                        handle.write("\n")
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())


def _json_or_none(line: str) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def run_items(items: Iterable[tuple[str, Any]], work: Callable[[Any], dict[str, Any]], journal: Journal,
              threads: int, label: str, summary: Callable[[dict[str, dict]], str] = lambda done: "") -> dict[str, dict]:
    """Run ``work`` on every item not yet journaled; returns id -> record for all items (old and new).

    The first item that raises stops the run after the items in flight are journaled; finished items are
    kept, so running again resumes where it stopped.
    """
    from slmkit.progress import progress

    items = list(items)
    done = journal.load()
    wanted = {item_id for item_id, _ in items}
    todo = [(i, payload) for i, payload in items if i not in done]
    with progress() as bar, ThreadPoolExecutor(max(1, min(threads, len(todo) or 1)),
                                               thread_name_prefix="synth-item") as pool:
        task = bar.add_task(label, total=len(items), completed=len(items) - len(todo), info=summary(done))
        futures = {pool.submit(work, payload): item_id for item_id, payload in todo}
        pending = set(futures)
        try:
            while pending:
                # FIRST_COMPLETED, not FIRST_EXCEPTION: the latter returns only when *all* items are done when
                # none fails, so nothing would reach the journal before the end and a kill would lose it all.
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                failed = [f.exception() for f in finished if f.exception() is not None]
                if failed:  # stop: let the items in flight finish, journal them, then raise
                    for future in pending:
                        future.cancel()
                    finished |= wait(pending)[0]
                    pending = set()
                for future in finished:
                    if not future.cancelled() and future.exception() is None:
                        record = {"id": futures[future], **future.result()}
                        journal.append(record)
                        done[record["id"]] = record
                        bar.update(task, advance=1, info=summary(done))
                if failed:
                    raise failed[0]
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return {k: v for k, v in done.items() if k in wanted}
