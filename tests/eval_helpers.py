"""Shared helpers of the evaluation tests: a rule-following judge backend and a one-thread fixture."""

from __future__ import annotations

import re

import pytest

from slmkit.models.generate import Generation


class GoldJudge:
    """Test double for the Backend protocol: "correct" iff the reference answer appears in the response."""

    calls = 0

    def __init__(self, **_: object):
        self.name = "gold"

    def generate(self, prompts, cfg):
        GoldJudge.calls += len(prompts)
        out = []
        for p in prompts:
            gold = re.search(r"Reference answer: (.*)\n", p).group(1)
            response = re.search(r"Student's response: (.*)\nIs the", p, re.S).group(1)
            out.append(Generation(p, ["correct" if gold in response else "incorrect"], [1]))
        return out


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run faster on one thread, and far faster when the cores are shared."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
