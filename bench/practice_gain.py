"""Does Orca-Math practice help? Held-out built-in math accuracy after two practice rounds vs the SFT model.

Orca-Math (arXiv 2402.14830) reports +5.3 points of GSM8K pass@1 from iterative practice over SFT. Here, for
three seeds and two students (decoder-only; encoder–decoder — ``encdec`` when that architecture is
registered, else stock ``t5``): one fixed data set (built-in math, the same train/val/test for every seed)
and tokenizer; a deliberately under-trained SFT model (seeded init and data order); its accuracy on the
test split; two practice rounds (k = 4 samples at T = 0.7, top-p 0.95, exact-match grading, DPO pairs with
the reference solution as fallback positive; early stopping off, so "two rounds" means two rounds); the
test accuracy after each round (1,024 fresh problems and 200 DPO steps per round). A control continues SFT
from the same model on the reference solutions with the rounds' steps, batch and learning rate: an
under-trained model gains from any further training, and the control says how much of the practice gain
that is. Every figure is a mean ± sd over the seeds; nothing is selected per seed.
Sampling throughput (answers/s) is that of the practice rounds. Torch runs single-threaded by default
(SLMKIT_BENCH_THREADS), which is faster than two threads on a shared, oversubscribed 2-core machine.

``--converged`` runs the paper's comparison instead: practice on top of SFT models that have stopped
improving (two-step problems, 1,000 SFT steps; practice and control at lr 1e-4, DPO-Positive; decoder only).

``--set KEY=VALUE`` (repeatable) changes one setting for a variant: a practice field (``method=kto``), an SFT
field (``sft.steps=500``) or a data generator parameter (``data.max_operand=30``); a variant's results go to
its work folder instead of ``bench/results/``. Work folders are keyed by the settings they hold (data + SFT;
practice inside), so a rerun with other settings never reuses models trained with different ones.

Run: ``flock /tmp/slmkit-bench.lock python bench/practice_gain.py [--out DIR] [--seeds 0 1 2] [--converged]
[--set KEY=VALUE ...]``. Writes ``bench/results/practice_gain.json`` (``practice_gain_converged.json`` with
``--converged``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import check, info, mean_sd, report  # noqa: E402

DATA = dict(task="math", params={"min_steps": 1, "max_steps": 1, "max_operand": 9}, n_train=6000, n_val=200,
            n_test=300, seed=0)
STUDENTS = {  # equal-ish size (~0.65M non-embedding parameters); SFT is short on purpose (under-trained)
    "decoder": dict(arch="decoder", preset="pico",
                    model_overrides={"hidden_size": 128, "intermediate_size": 384, "num_hidden_layers": 3}),
    "t5": dict(arch="t5", preset="pico",
               model_overrides={"d_model": 128, "d_kv": 32, "d_ff": 384, "num_layers": 2, "num_decoder_layers": 1}),
}
SFT = dict(steps=150, batch_size=32, lr=3e-3, warmup_steps=20, max_length=160, log_every=25)
PRACTICE = dict(method="dpo", beta=0.1, sft_weight=1.0, rounds=2, steps=200, batch_size=16, lr=1e-3, warmup_steps=5,
                max_length=160, problems_per_round=1024, max_pairs_per_problem=2, k=4, temperature=0.7, top_p=0.95,
                max_new_tokens=40, gen_batch_size=64, early_stop=False, max_epochs=2.0, log_every=10)
# The control: SFT continued from the same model on the reference solutions, with the practice rounds' steps
# (as trained), batch, learning rate and schedule (one run per round) — plain extra training, no sampling.
CONTROL_ARGS = ("batch_size", "lr", "warmup_steps", "max_length", "log_every")
TARGET_POINTS = 5.0
# --converged: the paper's comparison — practice on top of an SFT model that has stopped improving. Two-step
# problems (one-step ones reach 100 % with enough SFT), 1,000 SFT steps, a smaller practice step and
# DPO-Positive, since plain DPO on answers a digit apart lowers a converged model's accuracy. Decoder only.
CONVERGED = {"data": {"min_steps": 2, "max_steps": 2}, "sft": {"steps": 1000},
             "practice": {"lr": 1e-4, "dpop_lambda": 50.0, "max_new_tokens": 64}}


def prepare(out: Path) -> dict[str, str]:
    """Data splits and a BPE tokenizer, shared by every seed and student."""
    from slmkit.data import stage as data_stage
    from slmkit.models import tokenizer as tok_stage

    data_dir, tok_dir = out / "data", out / "tokenizer"
    if not (data_dir / "test.jsonl").exists():
        data_stage.run(data_stage.Config(**DATA), data_dir)
    if not (tok_dir / "tokenizer" / "tokenizer.json").exists():
        tok_stage.run(tok_stage.Config(train_file=str(data_dir / "train.jsonl"), vocab_size=512), tok_dir)
    return {"train": str(data_dir / "train.jsonl"), "val": str(data_dir / "val.jsonl"),
            "test": str(data_dir / "test.jsonl"), "tokenizer": str(tok_dir / "tokenizer")}


def test_accuracy(model_dir: str, files: dict[str, str]) -> float:
    """Greedy exact-match accuracy on the test split (never seen by SFT or practice)."""
    from slmkit.data.loaders import read_rows
    from slmkit.eval.exact_match import Config, evaluate
    from slmkit.models.load import load_model, load_tokenizer

    cfg = Config(max_new_tokens=PRACTICE["max_new_tokens"], batch_size=64)
    _, metrics = evaluate(load_model(model_dir), load_tokenizer(model_dir), read_rows(files["test"]), cfg)
    return 100.0 * metrics["accuracy"]


def one_seed(student: str, seed: int, files: dict[str, str], out: Path, practice_out: Path) -> dict[str, float]:
    """SFT (in ``out``) then two practice rounds and the control (in ``practice_out``) for one student and seed;
    test accuracy before and after each round."""
    from slmkit.train import practice, sft

    sft_dir = out / f"{student}_seed{seed}" / "sft"
    folder = practice_out / f"{student}_seed{seed}"
    if not (sft_dir / "model" / "config.json").exists():
        sft.run(sft.Config(train_file=files["train"], tokenizer=files["tokenizer"], seed=seed, **STUDENTS[student],
                           **SFT), sft_dir)
    cfg = practice.Config(train_file=files["train"], val_file=files["val"], model=str(sft_dir / "model"),
                          seed=seed, **PRACTICE)
    result = practice.practise(cfg, folder / "practice").metrics
    accs = [test_accuracy(str(sft_dir / "model"), files)]
    accs += [test_accuracy(str(folder / "practice" / f"round_{r}" / "model"), files)
             for r in range(1, PRACTICE["rounds"] + 1)]
    control = test_accuracy(continued_sft(seed, files, folder, sft_dir / "model"), files)
    row = {"sft": accs[0], "round_1": accs[1], "round_2": accs[-1], "gain": accs[-1] - accs[0],
           "control": control, "over_control": accs[-1] - control, "answers_per_s": result["answers_per_s"]}
    print(f"  {student} seed {seed}: test accuracy SFT {accs[0]:.1f} → " + " → ".join(f"{a:.1f}" for a in accs[1:])
          + f"; continued SFT {control:.1f}  ({result['answers_per_s']:.1f} answers/s)", flush=True)
    return row


def continued_sft(seed: int, files: dict[str, str], folder: Path, start: Path) -> str:
    """The control model: one continued-SFT run per practice round, each from the previous one's model, with
    as many steps as that round trained (its ``max_epochs`` cap can make that fewer than ``steps``)."""
    from slmkit.artifacts import read_json
    from slmkit.train import sft

    for r in range(1, PRACTICE["rounds"] + 1):
        out = folder / f"control_round_{r}"
        steps = read_json(folder / "practice" / f"round_{r}" / "round.json").get("train_steps", 0)
        if not steps:  # the round had no pairs and carried its model over
            continue
        if not (out / "model" / "config.json").exists():
            sft.run(sft.Config(train_file=files["train"], model=str(start), seed=seed * 1000 + r, steps=steps,
                               **{key: PRACTICE[key] for key in CONTROL_ARGS}), out)
        start = out / "model"
    return str(start)


def settings_key(kind: str, *settings: dict) -> str:
    """A work folder name that changes with the settings it holds (``kind-`` + 10 hex digits)."""
    from slmkit.artifacts import fingerprint

    return f"{kind}-" + fingerprint({"settings": list(settings)}, {})[:10]


def apply_settings(pairs: list[str]) -> None:
    """``--set KEY=VALUE``: ``data.NAME`` (generator parameter), ``sft.NAME`` or a practice field; VALUE is YAML."""
    import dataclasses

    import yaml

    from slmkit.errors import ConfigError
    from slmkit.train import practice, sft

    known = {"sft": {f.name for f in dataclasses.fields(sft.Config)},
             "practice": {f.name for f in dataclasses.fields(practice.Config)}}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        scope, _, name = key.rpartition(".")
        if not sep or scope not in ("", "data", "sft"):
            raise ConfigError(f"--set {pair}: write KEY=VALUE with KEY a practice field, sft.FIELD or data.PARAM")
        if scope != "data" and name not in known[scope or "practice"]:
            raise ConfigError(f"--set {pair}: '{name}' is not a field of the {scope or 'practice'} config")
        target = {"data": DATA["params"], "sft": SFT, "": PRACTICE}[scope]
        target[name] = yaml.safe_load(text)


def summarise(student: str, rows: list[dict[str, float]], target: bool) -> list:
    """Records for one student: gain (checked for the decoder), accuracies, per-seed gains, throughput."""
    gain, sd = mean_sd([r["gain"] for r in rows])
    gain_name = f"{student}: gain after {PRACTICE['rounds']} rounds, points (mean)"
    records = [check(gain_name, round(gain, 2), ">=", TARGET_POINTS) if target else info(gain_name, round(gain, 2)),
               info(f"{student}: gain, mean ± sd over {len(rows)} seeds", f"{gain:+.1f} ± {sd:.1f}")]
    for key in ("sft", "round_1", "round_2", "control"):
        m, s = mean_sd([r[key] for r in rows])
        label = "continued SFT (control)" if key == "control" else key.replace("_", " ")
        records.append(info(f"{student}: test accuracy % {label}", f"{m:.1f} ± {s:.1f}"))
    records.append(info(f"{student}: per-seed gains", " ".join(f"{r['gain']:+.1f}" for r in rows)))
    m, s = mean_sd([r["over_control"] for r in rows])
    records.append(info(f"{student}: round 2 minus continued SFT (same steps), points", f"{m:+.1f} ± {s:.1f}"))
    m, s = mean_sd([r["answers_per_s"] for r in rows])
    records.append(info(f"{student}: sampling answers/s (k=4, practice)", f"{m:.1f} ± {s:.1f}"))
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="/tmp/slmkit-bench-practice", help="work folder (reused if present)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--converged", action="store_true", help="practise on converged SFT models (see CONVERGED);"
                        " writes practice_gain_converged.json")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a variant: practice field, sft.FIELD or data.PARAM (results go to the work folder)")
    args = parser.parse_args(argv)
    if args.converged:
        DATA["params"].update(CONVERGED["data"])
        SFT.update(CONVERGED["sft"])
        PRACTICE.update(CONVERGED["practice"])
    apply_settings(args.set)
    os.environ.setdefault("SLMKIT_QUIET", "1")
    import torch

    from slmkit.models.registry import ARCHITECTURES

    torch.set_num_threads(int(os.environ.get("SLMKIT_BENCH_THREADS", "1")))
    if args.converged:
        del STUDENTS["t5"]
    elif "encdec" in ARCHITECTURES:  # the paper-faithful encoder–decoder, when it has landed
        STUDENTS["encdec"] = dict(arch="encdec", preset="pico", model_overrides={})
        del STUDENTS["t5"]
    out = Path(args.out) / settings_key("sft", DATA, SFT, STUDENTS)
    practice_out = out / settings_key("practice", PRACTICE)
    began = time.time()
    files = prepare(out)
    records = []
    for student in STUDENTS:
        rows = [one_seed(student, seed, files, out, practice_out) for seed in args.seeds]
        records += summarise(student, rows, target=student == "decoder")
    dpop = f" + DPO-Positive λ={PRACTICE['dpop_lambda']}" if PRACTICE.get("dpop_lambda") else ""
    records.append(info("practice loss", f"{PRACTICE['method']} β={PRACTICE['beta']} + NLL(chosen)×"
                                         f"{PRACTICE['sft_weight']} (RPO){dpop}, lr {PRACTICE['lr']}"))
    records.append(info("wall time, minutes", round((time.time() - began) / 60, 1)))
    name = "practice_gain_converged" if args.converged else "practice_gain"
    if args.set:
        records.append(info("variant settings (--set)", " ".join(args.set)))
    report(name, records, folder=practice_out if args.set else None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
