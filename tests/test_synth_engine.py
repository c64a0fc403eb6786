"""The synth engine: batching and concurrency over a backend, the answer cache, the resumable journal."""

from __future__ import annotations

import json
import threading
import time

import pytest

from slmkit.models.generate import GenerateConfig, Generation
from slmkit.synth.engine import Batcher, Cache, Journal, Teacher, run_items


class Recorder:
    """Echo backend that records its calls and how many ran at once."""

    def __init__(self, delay: float = 0.0, fail_on: str | None = None):
        self.name = "recorder"
        self.delay, self.fail_on = delay, fail_on
        self.calls: list[list[str]] = []
        self.running = self.peak = 0
        self.lock = threading.Lock()

    def generate(self, prompts, cfg):
        with self.lock:
            self.calls.append(list(prompts))
            self.running += 1
            self.peak = max(self.peak, self.running)
        time.sleep(self.delay)
        with self.lock:
            self.running -= 1
        if self.fail_on and any(self.fail_on in p for p in prompts):
            raise RuntimeError(f"backend down for {self.fail_on}")
        return [Generation(p, [f"{p}#{i}" for i in range(cfg.n)], [1] * cfg.n) for p in prompts]


def _ask_all(teacher, prompts, threads=16, gen=GenerateConfig(n=2)):
    out = {}
    workers = [threading.Thread(target=lambda p=p: out.__setitem__(p, teacher.ask("r", p, gen))) for p in prompts]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return out


def test_batcher_caps_calls_in_flight_and_packs_waiting_prompts():
    backend = Recorder(delay=0.05)
    teacher = Teacher({}, backend, None, concurrency=2, batch_size=4)
    prompts = [f"p{i}" for i in range(20)]
    out = _ask_all(teacher, prompts)
    assert out == {p: [f"{p}#0", f"{p}#1"] for p in prompts}  # every answer reaches its own caller
    assert backend.peak <= 2
    assert max(len(c) for c in backend.calls) == 4 and sum(map(len, backend.calls)) == 20
    teacher.close()


def test_concurrency_overlaps_slow_calls():
    sequential, concurrent = Recorder(delay=0.03), Recorder(delay=0.03)
    _ask_all(Teacher({}, sequential, None, 1, 1), [f"p{i}" for i in range(16)])
    _ask_all(Teacher({}, concurrent, None, 8, 1), [f"p{i}" for i in range(16)])
    assert sequential.peak == 1 and 1 < concurrent.peak <= 8  # (speed is measured in bench/synth_pipeline.py)


def test_backend_max_concurrency_is_respected():
    backend = Recorder(delay=0.02)
    backend.max_concurrency = 1  # what the local backend declares
    _ask_all(Teacher({}, backend, None, 8, 1), [f"p{i}" for i in range(8)])
    assert backend.peak == 1


def test_cache_answers_repeated_prompts_without_calling(tmp_path):
    backend = Recorder()
    teacher = Teacher({}, backend, Cache(tmp_path), 4, 1)
    first = _ask_all(teacher, ["a", "b"])
    again = _ask_all(Teacher({}, backend, Cache(tmp_path), 4, 1), ["a", "b"])
    assert again == first and len(backend.calls) == 2
    # another sampling seed or another backend is another entry
    teacher.ask("r", "a", GenerateConfig(n=2, seed=1))
    assert len(backend.calls) == 3
    entry = next(tmp_path.rglob("*.json"))
    entry.write_text("{trunc")  # a damaged entry is asked again, not trusted
    _ask_all(Teacher({}, backend, Cache(tmp_path), 4, 1), ["a", "b"])
    assert len(backend.calls) == 4


def test_backend_errors_reach_every_waiting_caller():
    teacher = Teacher({}, Recorder(fail_on="bad"), None, 1, 8)
    with pytest.raises(RuntimeError, match="backend down"):
        teacher.ask("r", "bad prompt", GenerateConfig())
    assert teacher.ask("r", "fine", GenerateConfig()) == ["fine#0"]


def test_journal_survives_a_torn_line_and_keeps_first_records(tmp_path):
    path = tmp_path / "journal.jsonl"
    journal = Journal(path, "k1")
    assert journal.load() == {}
    journal.append({"id": "a", "rows": [1]})
    journal.append({"id": "a", "rows": [2]})  # a duplicate id (cannot happen normally) keeps the first
    with open(path, "a") as handle:
        handle.write('{"id": "b", "rows": [')  # killed mid-write
    records = Journal(path, "k1").load()
    assert records == {"a": {"id": "a", "rows": [1]}}
    Journal(path, "k1").append({"id": "c", "rows": []})  # starts on a new line after the torn one
    assert set(Journal(path, "k1").load()) == {"a", "c"}
    assert Journal(path, "other settings").load() == {}  # another key: set aside, not mixed in
    assert (tmp_path / "journal.jsonl.stale").exists()


def test_run_items_resumes_and_stops_at_the_first_failure(tmp_path):
    journal = Journal(tmp_path / "j.jsonl", "k")
    items = [(f"{i:03d}", i) for i in range(30)]
    seen = []

    def work(i):
        if i == 20 and not seen.count("retry"):
            raise RuntimeError("teacher unreachable")
        seen.append(i)
        time.sleep(0.001)
        return {"rows": [i]}

    with pytest.raises(RuntimeError, match="unreachable"):
        run_items(items, work, journal, threads=4, label="t")
    saved = [json.loads(line)["id"] for line in (tmp_path / "j.jsonl").read_text().splitlines()[1:]]
    assert "020" not in saved and len(saved) == len(set(saved)) >= 4
    seen.append("retry")
    before = len([s for s in seen if s != "retry"])
    records = run_items(items, work, journal, threads=4, label="t")
    assert sorted(records) == [i for i, _ in items]
    assert len([s for s in seen if s != "retry"]) - before == 30 - len(saved)  # only the missing items ran


def test_a_backend_that_answers_the_wrong_number_of_samples_is_an_error():
    from slmkit.errors import ModelError

    class Short(Recorder):
        def generate(self, prompts, cfg):
            return [Generation(p, ["only one"], [1]) for p in prompts]

    with pytest.raises(ModelError, match="samples"):
        Teacher({}, Short(), None, 1, 1).ask("r", "p", GenerateConfig(n=2))
