"""KD loss terms: definitions, masking and sums, temperature, top-k bins with the rest mass, ULD."""

from __future__ import annotations

import pytest
import torch

from slmkit.train.losses import kd_divergence, kd_sum_full, kd_sum_topk, topk_bins, uld_sum


def logits(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 3


def reference(p, q, kind, beta):
    """Textbook divergences over plain probability vectors (float64)."""
    kl = lambda a, b: float((a * (a / b).log()).sum())  # noqa: E731
    if kind == "forward_kl":
        return kl(p, q)
    if kind == "reverse_kl":
        return kl(q, p)
    m = beta * p + (1 - beta) * q
    return beta * kl(p, m) + (1 - beta) * kl(q, m)


@pytest.mark.parametrize("kind,beta", [("forward_kl", 0.5), ("reverse_kl", 0.5), ("jsd", 0.3), ("jsd", 0.9)])
def test_divergences_match_their_definitions(kind, beta):
    s, t = logits(5, 11, seed=1).double(), logits(5, 11, seed=2).double()
    got = kd_divergence(s.log_softmax(-1), t.log_softmax(-1), kind, beta)
    for row in range(5):
        want = reference(t[row].softmax(-1), s[row].softmax(-1), kind, beta)
        assert got[row].item() == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_jsd_ends_are_the_two_kls_trl_convention():
    s, t = logits(4, 9, seed=3).log_softmax(-1), logits(4, 9, seed=4).log_softmax(-1)
    assert torch.allclose(kd_divergence(s, t, "jsd", 0.0), kd_divergence(s, t, "forward_kl"))
    assert torch.allclose(kd_divergence(s, t, "jsd", 1.0), kd_divergence(s, t, "reverse_kl"))


def test_sum_is_masked_clipped_and_scaled_by_t_squared():
    s, t = logits(2, 6, 20, seed=5), logits(2, 6, 23, seed=6)  # teacher has 3 extra (padding) logits
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]], dtype=torch.bool)
    total = kd_sum_full(s, t, mask, temperature=2.0)
    per = kd_divergence((s / 2).log_softmax(-1), (t[..., :20] / 2).log_softmax(-1), "forward_kl")
    assert total.item() == pytest.approx(4.0 * per[mask].sum().item(), rel=1e-6)
    # changing a masked-out position (padding) changes nothing
    s2 = s.clone()
    s2[0, 4] += 100
    assert kd_sum_full(s2, t, mask, temperature=2.0).item() == pytest.approx(total.item(), rel=1e-7)


@pytest.mark.parametrize("kind", ["forward_kl", "reverse_kl", "jsd"])
def test_topk_with_all_tokens_is_the_full_loss_and_fewer_tokens_never_more(kind):
    s, t = logits(3, 5, 40, seed=7), logits(3, 5, 40, seed=8)
    mask = torch.ones(3, 5, dtype=torch.bool)
    full = kd_sum_full(s, t, mask, kind=kind, temperature=1.5)
    tlogp = (t / 1.5).log_softmax(-1)
    for k, exact in ((40, True), (8, False)):
        values, idx = tlogp.topk(k, dim=-1)
        tail = tlogp.scatter(-1, idx, float("-inf")).logsumexp(-1)
        got = kd_sum_topk(s, values, idx, tail, mask, kind=kind, temperature=1.5)
        if exact:
            assert got.item() == pytest.approx(full.item(), rel=1e-5)
        else:
            assert got.item() <= full.item() + 1e-5  # coarse-graining never increases a divergence


def test_topk_bins_keep_the_rest_mass():
    slogp = logits(2, 30, seed=9).log_softmax(-1)
    tlogp = logits(2, 30, seed=10).log_softmax(-1)
    values, idx = tlogp.topk(5, dim=-1)
    tail = tlogp.scatter(-1, idx, float("-inf")).logsumexp(-1)
    s_bins, t_bins = topk_bins(slogp, idx, values, tail)
    assert torch.allclose(s_bins.exp().sum(-1), torch.ones(2), atol=1e-6)
    assert torch.allclose(t_bins.exp().sum(-1), torch.ones(2), atol=1e-6)


def test_uld_is_sorted_l1_and_ignores_token_identity():
    s, t = logits(2, 4, 12, seed=11), logits(2, 4, 17, seed=12)
    mask = torch.ones(2, 4, dtype=torch.bool)
    got = uld_sum(s, t, mask)
    ps = s.softmax(-1).sort(-1, descending=True).values
    pt = t.softmax(-1).sort(-1, descending=True).values
    want = (torch.nn.functional.pad(ps, (0, 5)) - pt).abs().sum()
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    perm = torch.randperm(17)
    assert uld_sum(s, t[..., perm], mask).item() == pytest.approx(got.item(), rel=1e-6)


def test_zero_mass_gives_finite_values_and_gradients():
    s = logits(1, 2, 6, seed=13).requires_grad_()
    t = torch.tensor([[[0.0, -float("inf"), -float("inf"), 1.0, 2.0, -float("inf")]] * 2])
    for kind in ("forward_kl", "reverse_kl", "jsd"):
        loss = kd_sum_full(s, t, torch.ones(1, 2, dtype=torch.bool), kind=kind)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(s.grad).all()
        s.grad = None
