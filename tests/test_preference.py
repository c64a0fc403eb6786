"""Preference losses (DPO, IPO, KTO): hand-computed values, parity with TRL, data readers, the stage."""

from __future__ import annotations

import copy
import json
import math
from functools import partial

import pytest
import torch

from slmkit.data.format import encode_pair
from slmkit.models.build import build
from slmkit.train.batching import collate, decoder_start
from slmkit.train.losses import (cross_entropy_sum, dpo_losses, ipo_losses, kto_kl_point, kto_loss_sum, kto_losses,
                                 pair_loss_sum, sequence_logprobs)
from slmkit.train.preference import collate_examples, encode


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_dpo_and_ipo_losses_by_hand():
    chosen, rejected = torch.tensor([1.0, -0.5]), torch.tensor([-1.0, 0.5])
    # Δ = 2 and -1; β = 0.5 → -log σ(1), -log σ(-0.5)
    got = dpo_losses(chosen, rejected, beta=0.5)
    assert got.tolist() == pytest.approx([-math.log(sig(1.0)), -math.log(sig(-0.5))], abs=1e-6)
    smooth = dpo_losses(chosen, rejected, beta=0.5, label_smoothing=0.2)
    want = -0.8 * math.log(sig(1.0)) - 0.2 * math.log(sig(-1.0))
    assert smooth[0].item() == pytest.approx(want, abs=1e-6)
    # DPO-Positive, λ = 3: the first chosen log-ratio (1.0) is above 0, no penalty; the second (-0.5) loses
    # 3·0.5, Δ = (-0.5 - 1.5) - 0.5 = -2.5 → -log σ(-1.25)
    dpop = dpo_losses(chosen, rejected, beta=0.5, dpop_lambda=3.0)
    assert dpop.tolist() == pytest.approx([-math.log(sig(1.0)), -math.log(sig(-1.25))], abs=1e-6)
    # IPO: per-token log-ratios 1/2 - (-1)/4 = 0.75; (0.75 - 1/(2·0.5))² = 0.0625
    ipo = ipo_losses(chosen[:1], rejected[:1], torch.tensor([2]), torch.tensor([4]), beta=0.5)
    assert ipo.item() == pytest.approx(0.0625, abs=1e-7)


def test_kto_loss_by_hand():
    ratios = torch.tensor([0.4, -0.2, 1.0])
    desirable = torch.tensor([True, False, False])
    kl = kto_kl_point(torch.tensor([0.5, 0.1]), torch.tensor([0.2, 0.0]))  # mean(0.3, 0.1) = 0.2
    assert kl.item() == pytest.approx(0.2)
    assert kto_kl_point(torch.tensor([0.0]), torch.tensor([1.0])).item() == 0.0  # clamped at 0
    got = kto_losses(ratios, desirable, kl, beta=2.0, desirable_weight=1.5, undesirable_weight=0.5)
    want = [1.5 * (1 - sig(2 * (0.4 - 0.2))), 0.5 * (1 - sig(2 * (0.2 + 0.2))), 0.5 * (1 - sig(2 * (0.2 - 1.0)))]
    assert got.tolist() == pytest.approx(want, abs=1e-6)


# --- parity with TRL on the same decoder-only batch ---------------------------------------------------------

def _policy_and_reference(tokenizer, rows):
    """A policy that has learnt a little (so log-ratios and KTO's KL term are not trivially 0) and its start."""
    ref = build("decoder", "pico", tokenizer=tokenizer, seed=0)
    policy = copy.deepcopy(ref)
    opt = torch.optim.SGD(policy.parameters(), lr=0.05)
    batch = collate([encode_pair(tokenizer, r["prompt"], r["completion"], "plain") for r in rows],
                    pad_id=tokenizer.pad_token_id, max_length=128)
    for _ in range(2):
        loss, _ = cross_entropy_sum(policy, batch)
        (loss / 100).backward()
        opt.step()
        opt.zero_grad()
    return policy.eval(), ref.eval()


def _trl_trainer(kind, model, ref, tokenizer, tmp_path, **args):
    datasets = pytest.importorskip("datasets")
    trl = pytest.importorskip("trl")
    # TRL defaults to bf16 autocast, which accelerate wraps around the reference model: compare in float32.
    common = dict(output_dir=str(tmp_path / kind), use_cpu=True, report_to=[], per_device_train_batch_size=2,
                  gradient_checkpointing=False, bf16=False, **args)
    if kind == "dpo":
        data = datasets.Dataset.from_list([{"prompt": "a", "chosen": "b", "rejected": "c"}] * 2)
        return trl.DPOTrainer(model=model, ref_model=ref, args=trl.DPOConfig(**common), train_dataset=data,
                              processing_class=tokenizer)
    data = datasets.Dataset.from_list([{"prompt": "a", "completion": "b", "label": i % 2 == 0} for i in range(2)])
    return trl.KTOTrainer(model=model, ref_model=ref, args=trl.KTOConfig(**common), train_dataset=data,
                          processing_class=tokenizer)


def test_dpo_positive_reaches_the_stage_loss(tokenizer, math_rows):
    """``dpop_lambda`` in a stage config changes the loss the loop trains on, by DPO-Positive's formula."""
    from slmkit.train.preference import Config, loss_function

    rows = math_rows[:4]
    model = build("decoder", "pico", tokenizer=tokenizer, seed=0).eval()
    pairs = [{"prompt": r["prompt"], "chosen": r["completion"], "rejected": rows[(i + 1) % 4]["completion"]}
             for i, r in enumerate(rows)]
    examples = encode(pairs, tokenizer, "dpo", "plain", seed=0)
    batch = collate_examples(examples, partial(collate, pad_id=tokenizer.pad_token_id, max_length=256), "dpo")
    with torch.no_grad():
        batch["ref_logps"] = sequence_logprobs(model, batch)[0] + 1.0  # every log-ratio -1: both lost likelihood
        plain, _ = loss_function(Config(beta=0.5), (1.0, 1.0))(model, batch)
        dpop, _ = loss_function(Config(beta=0.5, dpop_lambda=2.0), (1.0, 1.0))(model, batch)
    # plain: Δ = -1 - (-1) = 0 → log 2 per pair; DPOP: Δ = (-1 - 2·1) - (-1) = -2 → -log σ(-1) per pair
    assert plain.item() == pytest.approx(4 * math.log(2.0), abs=1e-4)
    assert dpop.item() == pytest.approx(-4 * math.log(sig(-1.0)), abs=1e-4)


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo"])
def test_pair_losses_match_trl(loss_type, tokenizer, math_rows, tmp_path):
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    rows = math_rows[:5]
    policy, ref = _policy_and_reference(tokenizer, rows)
    pairs = [{"prompt": r["prompt"], "chosen": r["completion"], "rejected": rows[(i + 1) % 5]["completion"]}
             for i, r in enumerate(rows)]
    method, beta = ("dpo", 0.3) if loss_type == "sigmoid" else ("ipo", 0.5)
    examples = encode(pairs, tokenizer, method, "plain", seed=0)
    base = partial(collate, pad_id=tokenizer.pad_token_id, max_length=256)
    batch = collate_examples(examples, base, method)
    with torch.no_grad():
        batch["ref_logps"] = sequence_logprobs(ref, batch)[0]
        ours, metrics = pair_loss_sum(policy, batch, method=method, beta=beta)
    trainer = _trl_trainer("dpo", copy.deepcopy(policy), copy.deepcopy(ref), tokenizer, tmp_path, beta=beta,
                           loss_type=[loss_type])
    trl_batch = DataCollatorForPreference(pad_token_id=tokenizer.pad_token_id)(
        [{"prompt_ids": e["chosen"]["prompt_ids"], "chosen_ids": e["chosen"]["completion_ids"],
          "rejected_ids": e["rejected"]["completion_ids"]} for e in examples])
    trainer.model.eval()
    with torch.no_grad():
        theirs = trainer.compute_loss(trainer.model, trl_batch)
    assert 0.05 < theirs.item() < 5  # a realistic loss, not a saturated one
    assert abs(ours.item() / len(pairs) - theirs.item()) < 1e-5
    assert abs(metrics["reward_margin"] - trainer._metrics["eval"]["rewards/margins"][-1]) < 1e-5


def test_kto_loss_matches_trl(tokenizer, math_rows, tmp_path):
    from trl.trainer.kto_trainer import DataCollatorForUnpairedPreference

    rows = math_rows[:6]
    policy, ref = _policy_and_reference(tokenizer, rows)
    kto_rows = [{"prompt": r["prompt"], "completion": rows[(i + i % 2) % 6]["completion"], "label": i % 2 == 0}
                for i, r in enumerate(rows)]
    examples = encode(kto_rows, tokenizer, "kto", "plain", seed=0)
    # TRL pairs row i with the completion of row i-1 for the KL term; give slmkit the same partners.
    for i, e in enumerate(examples):
        e["kl"] = {"prompt_ids": e["completion"]["prompt_ids"],
                   "completion_ids": examples[i - 1]["completion"]["completion_ids"]}
    batch = collate_examples(examples, partial(collate, pad_id=tokenizer.pad_token_id, max_length=256), "kto")
    kl_part = {k[3:]: v for k, v in batch.items() if k.startswith("kl_")}
    weights = dict(beta=0.2, desirable_weight=1.3, undesirable_weight=0.7)
    with torch.no_grad():
        batch["ref_logps"] = sequence_logprobs(ref, batch)[0]
        batch["ref_kl_logps"] = sequence_logprobs(ref, kl_part)[0]
        ours, metrics = kto_loss_sum(policy, batch, **weights)
    assert metrics["kl"] > 0  # the KL reference point is exercised, not clamped away
    trainer = _trl_trainer("kto", copy.deepcopy(policy), copy.deepcopy(ref), tokenizer, tmp_path, **weights)
    trl_batch = DataCollatorForUnpairedPreference(pad_token_id=tokenizer.pad_token_id)(
        [{"prompt_ids": e["completion"]["prompt_ids"], "completion_ids": e["completion"]["completion_ids"],
          "KL_completion_ids": e["kl"]["completion_ids"], "label": e["label"]} for e in examples])
    trainer.model.eval()
    with torch.no_grad():
        theirs = trainer.compute_loss(trainer.model, trl_batch)
    assert abs(ours.item() / len(kto_rows) - theirs.item()) < 1e-5
    # The KL reference point is a batch sum of log-ratios (order 10), so float32 agreement is relative.
    assert metrics["kl"] == pytest.approx(trainer._metrics["eval"]["kl"][-1], rel=1e-5)


# --- data readers -----------------------------------------------------------------------------------------

def test_readers_name_file_line_and_field(tmp_path):
    from slmkit.data.preference import read_kto, read_pairs
    from slmkit.errors import DataError

    path = tmp_path / "pairs.jsonl"
    path.write_text('{"prompt": "p", "chosen": "a", "rejected": "b", "source": "x"}\n{"prompt": "p", "chosen": "a"}\n')
    with pytest.raises(DataError, match=r"pairs.jsonl line 2: field 'rejected' is missing"):
        read_pairs(path)
    path.write_text('{"prompt": "p", "chosen": "a", "rejected": "a"}\n')
    with pytest.raises(DataError, match="identical"):
        read_pairs(path)
    path.write_text('{"prompt": "p", "chosen": "a", "rejected": "b", "source": "x"}\n')
    assert read_pairs(path)[0]["meta"] == {"source": "x"}
    assert [(r["completion"], r["label"]) for r in read_kto(path)] == [("a", True), ("b", False)]
    kto = tmp_path / "kto.jsonl"
    kto.write_text('{"prompt": "p", "completion": "a", "label": 1}\n{"prompt": "p", "completion": "b", "label": "no"}\n')
    with pytest.raises(DataError, match=r"kto.jsonl line 2: field 'label' must be true or false"):
        read_kto(kto)
    with pytest.raises(DataError, match="must be a .jsonl"):
        read_pairs(tmp_path / "pairs.csv")


# --- training: both architectures, exact accumulation, live reference, the stage ----------------------------

def _pairs(rows):
    """Learnable preferences: the rejected answer is the right solution with a wrong final answer."""
    return [{"prompt": r["prompt"], "chosen": r["completion"], "rejected": r["completion"].replace("#### ", "#### 9")}
            for r in rows]


def _args(**kw):
    from slmkit.train.preference import PreferenceArgs

    base = dict(steps=4, batch_size=8, lr=3e-3, warmup_steps=1, max_length=128, log_every=1, seed=0)
    return PreferenceArgs(**{**base, **kw})


@pytest.mark.parametrize("arch,method", [("decoder", "dpo"), ("t5", "dpo"), ("t5", "kto"), ("decoder", "ipo")])
def test_alignment_raises_the_margin_for_both_kinds(arch, method, tokenizer, math_rows, tmp_path):
    from slmkit.data.preference import pairs_to_kto
    from slmkit.train.preference import align

    pairs = _pairs(math_rows[:32])
    rows = pairs_to_kto(pairs) if method == "kto" else pairs
    model = build(arch, "pico", tokenizer=tokenizer, seed=0)
    start = copy.deepcopy(model)
    model, summary = align(model, tokenizer, rows, None, _args(steps=12, method=method), tmp_path, ref_id="t")
    examples = encode(pairs, tokenizer, "dpo", "plain", 0)
    base = partial(collate, pad_id=tokenizer.pad_token_id, max_length=128, decoder_start_id=decoder_start(model))
    batch = collate_examples(examples, base, "dpo")
    with torch.no_grad():
        batch["ref_logps"] = sequence_logprobs(start, batch)[0]
        _, metrics = pair_loss_sum(model, batch, beta=0.1)
    assert metrics["reward_accuracy"] > 0.9 and metrics["reward_margin"] > 0


@pytest.mark.parametrize("method", ["dpo", "kto"])
def test_accumulation_is_exact_and_live_reference_matches_cache(method, tokenizer, math_rows, tmp_path):
    from slmkit.data.preference import pairs_to_kto
    from slmkit.train.preference import align

    rows = _pairs(math_rows[:16])
    rows = pairs_to_kto(rows) if method == "kto" else rows
    runs = {}
    for name, kw in {"one": {}, "live": {"precompute_ref": False}, "four": {"grad_accum": 4}}.items():
        model = build("decoder", "pico", tokenizer=tokenizer, seed=0)
        runs[name], _ = align(model, tokenizer, rows, None, _args(method=method, **kw), tmp_path / name, ref_id="t")
    diff = {n: max((p - q).abs().max().item() for p, q in zip(runs["one"].parameters(), runs[n].parameters()))
            for n in ("live", "four")}
    assert diff["live"] < 1e-6
    if method == "dpo":  # KTO's z0 is a per-micro-batch estimate (as in TRL), so only DPO sums exactly
        # Adam divides by sqrt(v): float-rounding differences in near-zero gradients grow to ~1e-4 in the
        # weights after a few steps, so weights are compared loosely here (gradients are exact to ~1e-7).
        assert diff["four"] < 5e-4


def test_preference_stage_with_lora_and_cached_reference(tokenizer, math_rows, tmp_path):
    from slmkit.models.load import load_model, save_model
    from slmkit.train.preference import Config, run

    start = tmp_path / "start"
    save_model(build("decoder", "pico", tokenizer=tokenizer, seed=0), tokenizer, start)
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in _pairs(math_rows[:16])))
    cfg = Config(train_file=str(data), model=str(start), steps=3, batch_size=8, lr=1e-2, warmup_steps=1,
                 max_length=128, lora_r=4, log_every=1)
    result = run(cfg, tmp_path / "stage")
    cache = json.loads((tmp_path / "stage" / "ref_logps_train.json").read_text())
    assert len(cache["values"]) == 16 and result.metrics["train_rows"] == 16
    assert (tmp_path / "stage" / "adapter" / "adapter_config.json").exists()
    aligned = load_model(str(tmp_path / "stage" / "model"))  # a plain model: the adapter is merged
    before = load_model(str(start))
    assert not any("lora" in n for n in aligned.state_dict())
    assert max((p - q).abs().max().item() for p, q in zip(aligned.parameters(), before.parameters())) > 1e-4
    with pytest.raises(Exception, match="label_smoothing"):
        run(Config(train_file=str(data), model=str(start), method="ipo", label_smoothing=0.1), tmp_path / "bad")
    with pytest.raises(Exception, match="dpop_lambda"):
        run(Config(train_file=str(data), model=str(start), method="kto", dpop_lambda=50.0), tmp_path / "bad")
