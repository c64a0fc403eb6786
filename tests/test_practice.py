"""The practice stage (Orca-Math): pair construction, judge grading, a round that helps, exact resume."""

from __future__ import annotations

import json
import random

import pytest

from slmkit.train.practice import Config, build_preferences, load_state, practise

NAMES = ("Tom", "Mia", "Sam", "Ana", "Leo", "Zoe", "Ben", "Ivy", "Max", "Eva", "Jack", "Lily")
ITEMS = ("apples", "cards", "coins", "books", "shells", "stamps", "beads", "pens")


def lookup_rows(n: int, seed: int) -> list[dict]:
    """A trivially learnable task: the answer is a fixed number per kind of item."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        i = rng.randrange(len(ITEMS))
        prompt = f"{rng.choice(NAMES)} has some {ITEMS[i]}. Which kind?"
        rows.append({"prompt": prompt, "completion": f"#### {i + 1}", "answer": str(i + 1), "meta": {}})
    return rows


@pytest.fixture(scope="module")
def lookup_task(tmp_path_factory, tokenizer):
    """Train/held-out files and an under-trained pico decoder that gets some answers right."""
    from slmkit.data.loaders import write_rows
    from slmkit.models.build import build
    from slmkit.models.load import save_model
    from slmkit.train.loop import TrainArgs, train
    from slmkit.train.sft import sft_job

    root = tmp_path_factory.mktemp("lookup")
    rows = lookup_rows(360, seed=1)
    write_rows(root / "train.jsonl", rows[:300])
    write_rows(root / "val.jsonl", rows[300:])
    model = build("decoder", "pico", tokenizer=tokenizer, seed=0)
    args = TrainArgs(steps=120, batch_size=16, lr=1e-2, warmup_steps=2, max_length=64, seed=0)
    job = sft_job(model, tokenizer, rows[:300], None, type("C", (), {"prompt_format": "plain", "max_length": 64})())
    model, _ = train(model, job, args, root / "sft")
    save_model(model, tokenizer, root / "model")
    return root


def config(root, **kw) -> Config:
    base = dict(train_file=str(root / "train.jsonl"), val_file=str(root / "val.jsonl"), model=str(root / "model"),
                rounds=1, steps=20, batch_size=16, lr=1e-3, sft_weight=1.0, warmup_steps=2, max_length=64, beta=0.1,
                problems_per_round=96, max_new_tokens=6, gen_batch_size=48, log_every=1, seed=0)
    return Config(**{**base, **kw})


def test_pairs_from_hand_made_grades():
    def g(*answers):
        return [{"text": t, "correct": c} for t, c in answers]

    problems = [{"prompt": f"p{i}", "answer": "1", "completion": f"ref{i}"} for i in range(5)]
    problems[3]["completion"] = ""
    graded = [g(("A", True), ("B", False), ("C", False), ("A", True)),  # dup positive counted once
              g(("X", False), ("Y", False)),                             # none right: reference is the positive
              g(("R", True), ("S", True)),                               # no wrong answer: skipped
              g(("U", False)),                                           # none right, no reference: skipped
              g(("?", None), ("V", False))]                              # an ungraded answer is neither
    rows, counts = build_preferences(problems, graded, "dpo")
    assert [(r["prompt"], r["chosen"], r["rejected"]) for r in rows] == [
        ("p0", "A", "B"), ("p0", "A", "C"), ("p1", "ref1", "X"), ("p1", "ref1", "Y"), ("p4", "ref4", "V")]
    assert counts == {"problems": 5, "skipped_no_negative": 1, "skipped_no_positive": 1, "fallback_positive": 2,
                      "ungraded_answers": 1, "rows": 5}
    kto, kto_counts = build_preferences(problems, graded, "kto")
    assert [(r["prompt"], r["completion"], r["label"]) for r in kto[:5]] == [
        ("p0", "A", True), ("p0", "B", False), ("p0", "C", False), ("p1", "ref1", True), ("p1", "X", False)]
    assert kto_counts["skipped_no_negative"] == 1 and kto_counts["rows"] == 8
    capped, _ = build_preferences(problems[:1], graded[:1], "dpo", max_pairs=1, seed=0)
    assert len(capped) == 1 and capped[0]["chosen"] == "A"


class FakeJudge:
    """A judge backend that says CORRECT when the answer ends with the teacher's final answer."""

    def __init__(self, garbled: str = "??"):
        self.name, self.garbled = "fake", garbled

    def generate(self, prompts, cfg):
        from slmkit.models.generate import Generation

        out = []
        for p in prompts:
            teacher = p.split("Teacher's final answer: ")[1].split("\n")[0]
            response = p.split("Student's answer: ")[1].split("\n")[0]
            verdict = self.garbled if response == "garbled" else (
                "CORRECT" if response.endswith(teacher) else "Incorrect.")
            out.append(Generation(prompt=p, texts=[verdict], n_tokens=[1]))
        return out


def test_judge_grades_through_a_backend(monkeypatch, tmp_path):
    from slmkit.backends import BACKENDS
    from slmkit.errors import ConfigError
    from slmkit.train.practice import make_grader

    monkeypatch.setitem(BACKENDS, "fake", f"{__name__}:FakeJudge")
    cfg = Config(grader="judge", judge={"kind": "fake"})
    problems = [{"prompt": "q", "answer": "7", "completion": "3 + 4 = 7.\n#### 7"}]
    graded = make_grader(cfg)(problems, [["so it is 7", "it is 8", "garbled"]])
    assert [a["correct"] for a in graded[0]] == [True, False, None]
    with pytest.raises(ConfigError, match="judge_template"):
        make_grader(Config(grader="judge", judge={"kind": "fake"}, judge_template="{nope}"))
    with pytest.raises(ConfigError, match="backend spec"):
        make_grader(Config(grader="judge"))


def test_one_round_of_practice_raises_held_out_accuracy(lookup_task, tmp_path):
    result = practise(config(lookup_task), tmp_path)
    metrics = result.metrics
    assert 0.05 < metrics["heldout_accuracy_start"] < 0.8  # room to improve, and something to learn from
    assert metrics["round_1_heldout_accuracy"] > metrics["heldout_accuracy_start"]
    round_1 = json.loads((tmp_path / "round_1" / "round.json").read_text())
    assert round_1["answers"] == 96 * 4 and round_1["answers_per_s"] > 0 and round_1["rows"] > 0
    for name in ("samples.jsonl", "grades.jsonl", "pairs.jsonl", "metrics.jsonl", "eval.jsonl", "model"):
        assert (tmp_path / "round_1" / name).exists(), name
    assert (tmp_path / "model" / "config.json").exists() and (tmp_path / "report_section.md").exists()


def test_round_steps_are_capped_at_max_epochs_over_its_rows(lookup_task, tmp_path):
    from slmkit.train.practice import round_config

    cfg = config(lookup_task, steps=50, max_epochs=2.0)
    assert [round_config(cfg, n).steps for n in (1, 16, 100, 1000)] == [1, 2, 13, 50]
    assert round_config(config(lookup_task, steps=50, max_epochs=0), 1).steps == 50
    practise(config(lookup_task, steps=50, problems_per_round=4), tmp_path)  # a few pairs, not 50 steps on them
    round_1 = json.loads((tmp_path / "round_1" / "round.json").read_text())
    assert 0 < round_1["rows"] <= 16 and round_1["train_steps"] == (1 if round_1["rows"] <= 8 else 2)


class Kill(Exception):
    pass


def test_killed_practice_resumes_at_round_and_step(lookup_task, tmp_path):
    from slmkit.models.load import load_model

    cfg = config(lookup_task, rounds=2, steps=6, checkpoint_every=2, problems_per_round=48, early_stop=False)
    straight = practise(cfg, tmp_path / "straight")
    seen: list[int] = []

    def kill_in_round_2(step: int) -> None:
        seen.append(step)
        if len(seen) == 6 + 3:  # round 2, step 3: its last checkpoint is at step 2
            raise Kill

    with pytest.raises(Kill):
        practise(cfg, tmp_path / "resumed", on_step=kill_in_round_2)
    state = json.loads((tmp_path / "resumed" / "state.json").read_text())
    assert state["current_round"] == 2 and len(state["rounds"]) == 1
    samples_1 = (tmp_path / "resumed" / "round_1" / "samples.jsonl").stat().st_mtime_ns
    seen.clear()
    resumed = practise(cfg, tmp_path / "resumed", on_step=seen.append)
    assert seen == [3, 4, 5, 6]  # round 1 was not redone; round 2 went on from its step-2 checkpoint
    assert (tmp_path / "resumed" / "round_1" / "samples.jsonl").stat().st_mtime_ns == samples_1
    a, b = (load_model(str(tmp_path / run / "round_2" / "model")) for run in ("straight", "resumed"))
    assert max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters())) < 1e-6
    assert resumed.metrics == straight.metrics | {"answers_per_s": resumed.metrics["answers_per_s"]}
    # A different config must not reuse these rounds.
    load_state(tmp_path / "resumed", "another-config")
    assert not (tmp_path / "resumed" / "round_1").exists()
