"""The ``guard_data`` stage: answerable-or-not prompt data for a guard, with source-held-out splits.

Reads the prompt sets in :mod:`slmkit.guard.sources` in place, labels each prompt ``refuse`` or
``comply``, removes duplicates, and splits:

- training sources: stratified by (source, category) into ``train`` / ``val`` / ``test``;
- ``holdout`` sources: whole sources kept out of training and calibration (split ``heldout``), so that
  detection and over-refusal are measured on prompts of a kind the guard never saw;
- XSTest: evaluation only (split ``xstest``); naming it as a training or held-out source is an error.

Duplicates: texts equal after normalisation are kept once, and a near-duplicate (word-set Jaccard at or
above ``near_dup``, found with MinHash LSH) of a prompt in a higher tier (XSTest, then held-out sources)
is dropped whatever its label, so nothing evaluated leaks into training. Inside a tier, near-duplicates
are dropped only when they share the label: contrast pairs such as "how to make a bomb" /
"how to make a bomb calorimeter" are what teaches a guard the difference.

Jailbreak variants (GPTFuzz templates, split by template into train/val/test so the test templates are
unseen): harmful AND benign questions are wrapped in equal numbers, so the template alone carries no
label. Each wrapped row records the character spans of its question (``meta.spans``).
Writes ``train/val/test/heldout/xstest.jsonl`` (canonical rows: ``prompt``, ``answer`` = refuse|comply,
``meta``) and ``summary.json`` (counts, duplicates removed, licences).
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmkit.artifacts import Result
from slmkit.config import field
from slmkit.errors import ConfigError, DataError
from slmkit.guard.sources import EVAL_ONLY, PLACEHOLDER, SOURCES, read_source, read_templates

LABELS = {"comply": 0, "refuse": 1}
TRAIN_SOURCES = ["do_not_answer", "advbench", "or_bench_toxic", "coconot_unsafe", "stl_unsafe", "alpaca",
                 "or_bench_hard", "or_bench_80k", "coconot_contrast", "coconot_pref", "oktest", "phtest",
                 "stl_safe", "cyberseceval_frr"]
HOLDOUT_SOURCES = ["harmbench", "gptfuzz_questions", "stl_alpaca", "gsm8k", "arc_challenge"]


@dataclass(frozen=True, kw_only=True)
class Config:
    data_dir: str | None = field(None, doc="shared data folder (default: slmkit.data.shared.shared_data_dir())")
    sources: list[str] = field(factory=lambda: list(TRAIN_SOURCES), doc="sources split into train/val/test")
    holdout: list[str] = field(factory=lambda: list(HOLDOUT_SOURCES), doc="whole sources kept for evaluation")
    caps: dict[str, int] = field(factory=lambda: {"alpaca": 3000, "gsm8k": 300, "arc_challenge": 300},
                                 doc="at most this many rows of a source (stratified sample)")
    val_frac: float = field(0.1, doc="fraction of each (source, category) stratum for validation")
    test_frac: float = field(0.1, doc="fraction of each (source, category) stratum for the test split")
    template_val_frac: float = field(0.15, doc="fraction of jailbreak templates kept for validation")
    template_test_frac: float = field(0.25, doc="fraction of jailbreak templates kept for test / held-out")
    wrap_train: int = field(600, doc="jailbreak-wrapped training prompts per label")
    wrap_eval: int = field(100, doc="jailbreak-wrapped prompts per label in val, test and heldout")
    near_dup: float = field(0.8, doc="word-set Jaccard at or above which two prompts are near-duplicates")
    seed: int = field(0, doc="seed for sampling, splitting and wrapping")


OUTPUTS = {"guard_data": "data"}
SPLITS = ("train", "val", "test", "heldout", "xstest")


def words(text: str) -> list[str]:
    """Lower-cased alphanumeric words: the unit of duplicate detection."""
    return re.findall(r"[a-z0-9]+", text.lower())


def check_config(cfg: Config) -> None:
    """Unknown sources, eval-only sources used for training, overlaps and bad fractions are errors."""
    for name in [*cfg.sources, *cfg.holdout, *cfg.caps]:
        if name not in SOURCES:
            raise ConfigError(f"guard_data: unknown source '{name}' (known: {', '.join(SOURCES)})")
    banned = EVAL_ONLY & set(cfg.sources + cfg.holdout)
    if banned:
        raise ConfigError(f"guard_data: {', '.join(sorted(banned))} is evaluation-only (XSTest): it is never "
                          "trained, calibrated on or held out; it is always written to the xstest split")
    both = set(cfg.sources) & set(cfg.holdout)
    if both:
        raise ConfigError(f"guard_data: {', '.join(sorted(both))} is both a training and a held-out source")
    if not (cfg.val_frac >= 0 and cfg.test_frac >= 0 and cfg.val_frac + cfg.test_frac < 1):
        raise ConfigError("guard_data: val_frac and test_frac must be >= 0 and sum to less than 1")
    if not 0 < cfg.template_val_frac + cfg.template_test_frac < 1:
        raise ConfigError("guard_data: template fractions must sum to between 0 and 1")


def read_all(cfg: Config, root: Path) -> list[dict[str, Any]]:
    """Every prompt of every named source, in dedup priority order: XSTest, held-out, training sources."""
    rows = []
    tiers = [(0, sorted(EVAL_ONLY)), (1, cfg.holdout), (2, cfg.sources)]
    for tier, names in tiers:
        for name in names:
            pairs = read_source(name, root)
            if not pairs:
                raise DataError(f"guard_data: source '{name}' under {root} has no prompts")
            for text, category in pairs:
                rows.append({"text": text, "source": name, "category": category,
                             "label": SOURCES[name].label, "tier": tier})
    return rows


def dedup(rows: list[dict[str, Any]], threshold: float, seed: int) -> tuple[list[dict], dict[str, int]]:
    """Drop exact and near-duplicates (see the module docstring); returns kept rows and drop counts."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=64)
    kept: list[dict] = []
    exact: dict[str, int] = {}
    stats = {"exact": 0, "near_same_label": 0, "near_eval_leak": 0}
    for row in rows:
        toks = set(words(row["text"]))
        key = " ".join(words(row["text"]))
        if key in exact:
            stats["exact"] += 1
            continue
        mh = MinHash(num_perm=64, seed=seed)
        mh.update_batch([t.encode() for t in toks] or [b""])
        reason = None
        for j in lsh.query(mh):
            other = kept[j]
            if _jaccard(toks, other["_words"]) < threshold:
                continue
            if other["tier"] < row["tier"]:
                reason = "near_eval_leak"
                break
            if other["label"] == row["label"]:
                reason = "near_same_label"
        if reason:
            stats[reason] += 1
            continue
        exact[key] = len(kept)
        lsh.insert(len(kept), mh)
        kept.append({**row, "_words": toks})
    for row in kept:
        del row["_words"]
    return kept, stats


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / max(1, len(a | b))


def _strata(rows: list[dict]) -> dict[tuple[str, str], list[dict]]:
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["source"], row["category"])].append(row)
    return groups


def cap_sources(rows: list[dict], caps: dict[str, int], seed: int) -> list[dict]:
    """Keep at most ``caps[source]`` rows of a source, the same fraction from each of its categories."""
    rng = random.Random(seed)
    by_source: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_source[row["source"]].append(row)
    out = []
    for name, group in by_source.items():
        cap = caps.get(name, 0)
        if not cap or len(group) <= cap:
            out += group
            continue
        for members in _strata(group).values():
            out += rng.sample(members, max(1, round(len(members) * cap / len(group))))
    return out


def assign_splits(rows: list[dict], cfg: Config) -> None:
    """Set ``row["split"]``: stratified train/val/test for tier 2, heldout / xstest for the others."""
    rng = random.Random(cfg.seed)
    for (source, _), members in sorted(_strata(rows).items()):
        tier = members[0]["tier"]
        if tier < 2:
            for row in members:
                row["split"] = "xstest" if tier == 0 else "heldout"
            continue
        members = sorted(members, key=lambda r: r["text"])
        rng.shuffle(members)
        n_test = round(len(members) * cfg.test_frac)
        n_val = round(len(members) * cfg.val_frac)
        for i, row in enumerate(members):
            row["split"] = "test" if i < n_test else "val" if i < n_test + n_val else "train"


def split_templates(templates: list[str], cfg: Config) -> dict[str, list[int]]:
    """Template indices per split; the test templates also wrap the held-out questions."""
    order = list(range(len(templates)))
    random.Random(cfg.seed).shuffle(order)
    n_test = max(1, round(len(order) * cfg.template_test_frac))
    n_val = max(1, round(len(order) * cfg.template_val_frac))
    return {"test": sorted(order[:n_test]), "val": sorted(order[n_test:n_test + n_val]),
            "train": sorted(order[n_test + n_val:])}


def wrap(question: str, template: str) -> tuple[str, list[list[int]]]:
    """The template with every placeholder replaced by the question, and the question's character spans."""
    parts = template.split(PLACEHOLDER)
    text, spans = parts[0], []
    for part in parts[1:]:
        spans.append([len(text), len(text) + len(question)])
        text += question + part
    return text, spans


def wrapped_rows(rows: list[dict], templates: list[str], split_ids: dict[str, list[int]],
                 cfg: Config) -> list[dict]:
    """Equal numbers of harmful and benign questions of each split wrapped in that split's templates."""
    rng = random.Random(cfg.seed + 1)
    out = []
    for split in ("train", "val", "test", "heldout"):
        ids = split_ids["test" if split == "heldout" else split]
        n = cfg.wrap_train if split == "train" else cfg.wrap_eval
        for label in LABELS:
            pool = [r for r in rows if r["split"] == split and r["label"] == label]
            if split == "heldout" and label == "refuse":
                chosen = pool  # every held-out harmful question, wrapped once
            else:
                chosen = rng.sample(pool, min(n, len(pool)))
            for row in chosen:
                t = rng.choice(ids)
                text, spans = wrap(row["text"], templates[t])
                out.append({**row, "text": text, "wrapped": True, "template": t, "question": row["text"],
                            "spans": spans})
    return out


def to_canonical(row: dict[str, Any]) -> dict[str, Any]:
    """A canonical slmkit row: the prompt, its label as ``answer`` and everything else under ``meta``."""
    meta = {k: v for k, v in row.items() if k not in ("text", "label")}
    meta.setdefault("wrapped", False)
    return {"prompt": row["text"], "completion": "", "answer": row["label"], "meta": meta}


def build(cfg: Config) -> tuple[dict[str, list[dict]], dict[str, Any]]:
    """All splits as canonical rows, plus a summary (counts, duplicates removed, licences)."""
    from slmkit.data.shared import shared_data_dir

    check_config(cfg)
    root = Path(cfg.data_dir) if cfg.data_dir else shared_data_dir()
    if not root.is_dir():
        raise ConfigError(f"guard_data: data folder {root} does not exist (set data_dir or $SLMKIT_DATA)")
    rows, dropped = dedup(read_all(cfg, root), cfg.near_dup, cfg.seed)
    rows = cap_sources(rows, cfg.caps, cfg.seed)
    assign_splits(rows, cfg)
    templates = read_templates(root)
    split_ids = split_templates(templates, cfg)
    rows += wrapped_rows(rows, templates, split_ids, cfg)
    splits: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for row in rows:
        splits[row["split"]].append(to_canonical(row))
    counts: dict[str, dict[str, int]] = {}
    for split, members in splits.items():
        for r in members:
            key = f"{r['meta']['source']}{'+jailbreak' if r['meta']['wrapped'] else ''}:{r['answer']}"
            counts.setdefault(split, {}).setdefault(key, 0)
            counts[split][key] += 1
    summary = {"rows": {s: len(v) for s, v in splits.items()}, "counts": counts, "duplicates_removed": dropped,
               "templates": {s: len(v) for s, v in split_ids.items()},
               "licences": {n: SOURCES[n].licence for n in [*cfg.sources, *cfg.holdout, *sorted(EVAL_ONLY)]}}
    return splits, summary


def run(cfg: Config, run_dir: Path) -> Result:
    from slmkit.artifacts import atomic_write_json
    from slmkit.data.loaders import write_rows

    splits, summary = build(cfg)
    out = run_dir / OUTPUTS["guard_data"]
    for split, rows in splits.items():
        write_rows(out / f"{split}.jsonl", rows)
    atomic_write_json(out / "summary.json", summary)
    return Result(metrics={f"{s}_rows": n for s, n in summary["rows"].items()}
                  | {f"dropped_{k}": v for k, v in summary["duplicates_removed"].items()})


def read_split(folder: str | Path, split: str) -> list[dict[str, Any]]:
    """Rows of one split written by this stage; the ``answer`` of each must be refuse or comply."""
    from slmkit.data.loaders import read_rows

    path = Path(folder) / f"{split}.jsonl"
    rows = read_rows(path)
    for i, row in enumerate(rows, start=1):
        if row["answer"] not in LABELS:
            raise DataError(f"{path} line {i}: answer must be 'refuse' or 'comply', got {row['answer']!r}")
    return rows


def assert_trainable(rows: list[dict[str, Any]], where: str) -> None:
    """Refuse rows from an evaluation-only source (XSTest) in data used for training or calibration."""
    for i, row in enumerate(rows, start=1):
        source = row.get("meta", {}).get("source")
        if source in EVAL_ONLY or row.get("meta", {}).get("split") == "xstest":
            raise DataError(f"{where} row {i}: source '{source}' is evaluation-only (XSTest) and must never be "
                            "used for training or threshold calibration")
