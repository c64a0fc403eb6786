"""Test doubles for the synth tests (not collected): a scripted clinical teacher and a slowed rule teacher.

``ScriptedClinical`` plays the MediFlow roles from the prompt text alone: it writes a document and an
instruction, and answers the responder with a fixed misbehaviour on the first attempt (chosen by task) and
a schema-valid JSON object built from the schema shown in the prompt once the prompt carries feedback.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

from slmkit.models.generate import Generation
from slmkit.synth.rule_teacher import RuleMathBackend

# First-attempt behaviour by the schema's first required key (i.e. by task): what the tests expect counted.
FIRST_TRY = {"entities": "prose", "codes": "bad_code", "label": "never"}


def instance(schema: dict[str, Any]) -> Any:
    """A small value that follows ``schema`` (the subset of JSON Schema the taxonomy uses)."""
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    kind = kind[0] if isinstance(kind, list) else kind
    if kind == "object":
        return {k: instance(schema["properties"][k]) for k in schema.get("required", [])}
    if kind == "array":
        return [instance(schema["items"]) for _ in range(max(1, schema.get("minItems", 0)))]
    if "pattern" in schema:
        return "E11.9"
    return "x" * max(1, schema.get("minLength", 1)) + " note"


class ScriptedClinical:
    name = "scripted-clinical"

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def generate(self, prompts: list[str], cfg: Any) -> list[Generation]:
        self.prompts += prompts
        return [Generation(p, [self.reply(p)] * cfg.n, [1] * cfg.n) for p in prompts]

    def reply(self, prompt: str) -> str:
        if prompt.startswith("You are the Instruction writer."):
            kind = re.search(r"fictional (.+?) \(invent", prompt).group(1)
            words = " ".join(f"word{i}" for i in range(40))
            return f"Document:\nA {kind}: patient seen today. {words}\n\nInstruction:\nPlease perform the task on this document."
        if prompt.startswith("You are the Judge."):
            return "Score: 4"
        if "schema:\n" not in prompt:
            return "- a finding\n- another finding"
        schema = json.JSONDecoder().raw_decode(prompt, prompt.index("schema:\n") + 8)[0]
        retry = "previous answer was rejected" in prompt
        mode = FIRST_TRY.get(schema["required"][0], "ok")
        value = instance(schema)
        if mode == "never" or (not retry and mode == "prose"):
            return "Here are the entities I found: none."
        if not retry and mode == "bad_code":
            value["codes"][0]["code"] = "not-a-code"
        return "```json\n" + json.dumps(value) + "\n```"


class SlowRuleMath(RuleMathBackend):
    """The rule teacher with a delay per call, so that a test can kill a run half-way.

    With ``SLMKIT_FAKE_STALL_AFTER=N`` in the environment every call after the N-th hangs (and touches
    ``SLMKIT_FAKE_STALL_MARKER``), so the run is certainly unfinished when the test kills it, however fast
    the machine is; a timing-only kill raced the run to its end on a fast CI runner."""

    _calls = 0
    _lock = threading.Lock()

    def __init__(self, delay: float = 0.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.delay = delay
        self.stall_after = int(os.environ.get("SLMKIT_FAKE_STALL_AFTER") or 0)  # 0: never stall

    def generate(self, prompts: list[str], cfg: Any) -> list[Any]:
        time.sleep(self.delay)
        with SlowRuleMath._lock:  # one count across roles and threads
            SlowRuleMath._calls += 1
            calls = SlowRuleMath._calls
        if self.stall_after and calls > self.stall_after:
            Path(os.environ["SLMKIT_FAKE_STALL_MARKER"]).touch()
            time.sleep(3600)
        return super().generate(prompts, cfg)
