"""The Orca-Math pipeline (Mitra et al. 2024, arXiv 2402.14830, section 3.2): Suggester and Editor rounds.

For each seed problem, ``rounds`` times: the Suggester proposes how to make the current problem harder
without writing it; the Editor rewrites it with those suggestions (``edits_per_round`` samples, each may
carry the Editor's own solution as a reference answer); the Solver answers every new problem
``solver_samples`` times. A problem is kept when a valid solver answer (a final ``#### n`` and every
``a op b = c`` step exact) equals the reference, or, without a reference, when ``agreement`` solver
samples give the same answer (and, with ``verifier``, when the Verifier role accepts it); the first kept
variant is the next round's parent (so a round never builds on an unverified problem). The seed itself can be kept too (``keep_seeds``: solved
and checked against its own answer, as Orca-Math answered its seed set with the teacher).

Then, over all items: answers longer than ``max_chars`` dropped, exact and near duplicates dropped,
prompts sharing an n-gram with any evaluation set dropped (``synth/filters.py``). Each row carries its
provenance in ``meta.synth``: seed id, round, sample, the backend of every role, the hash of every prompt
that made it, and how it was verified. Reads: seed rows (a file, or a built-in task). Writes nothing
itself (see ``synth/stage.py``).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from slmkit.errors import ConfigError
from slmkit.synth.engine import Teacher, text_hash
from slmkit.synth.roles import Reject, Role, read, render


def make_items(cfg: Any) -> list[tuple[str, dict[str, Any]]]:
    """One item per seed row: (id, {"id", "seed"}); ids sort in seed order and change with the text."""
    if (cfg.seed_file is None) == (cfg.seed_task is None):
        raise ConfigError("synth (orca_math): set exactly one of seed_file (rows) or seed_task (built-in task)")
    if cfg.seed_file:
        from slmkit.data.loaders import LOADERS

        if cfg.seed_loader not in LOADERS:
            raise ConfigError(f"synth: unknown seed_loader '{cfg.seed_loader}' (known: {', '.join(LOADERS)})")
        seeds = LOADERS[cfg.seed_loader](cfg.seed_file)
        seeds = seeds[:cfg.n] if cfg.n else seeds
    else:
        from slmkit.data.tasks import get_task

        try:
            seeds = get_task(cfg.seed_task)(cfg.n, cfg.seed, **cfg.seed_params)
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"synth: seed_task '{cfg.seed_task}': {err}") from None
    items = []
    for index, seed in enumerate(seeds):
        item_id = f"{index:06d}-{text_hash(seed['prompt'])[:8]}"
        items.append((item_id, {"id": item_id, "seed": seed}))
    return items


def process(item: dict[str, Any], cfg: Any, teacher: Teacher, roles: dict[str, Role]) -> dict[str, Any]:
    """Run the rounds for one seed: ``{"rows", "rejects", "candidates"}`` (candidates: problems solved)."""
    from slmkit.eval.extractors import normalize

    run = _Run(item["id"], cfg, teacher, roles)
    seed = item["seed"]
    if cfg.keep_seeds:
        reference = normalize(seed["answer"]) if seed.get("answer") else None
        run.solve(seed["prompt"], reference, {"round": 0, "sample": 0}, {})
    parent = seed["prompt"]
    for round_no in range(1, cfg.rounds + 1):
        parent = run.round(parent, round_no)
        if parent is None:
            break
    return {"rows": run.rows, "rejects": run.rejects, "candidates": run.solved}


class _Run:
    """The state of one seed's rounds: kept rows, rejections, and the calls that made them."""

    def __init__(self, item_id: str, cfg: Any, teacher: Teacher, roles: dict[str, Role]):
        self.item_id, self.cfg, self.teacher, self.roles = item_id, cfg, teacher, roles
        self.rows: list[dict[str, Any]] = []
        self.rejects: list[dict[str, Any]] = []
        self.solved = 0

    def ask(self, role: str, context: dict[str, Any], n: int) -> tuple[str, list[str]]:
        from slmkit.models.generate import GenerateConfig

        prompt = render(self.roles[role], context)
        gen = GenerateConfig(max_new_tokens=self.cfg.max_new_tokens, temperature=self.cfg.temperature,
                             top_p=self.cfg.top_p, n=n, seed=self.cfg.seed, batch_size=self.cfg.batch_size,
                             prompt_format=self.cfg.prompt_format)
        return prompt, self.teacher.ask(role, prompt, gen)

    def reject(self, reason: str, where: dict[str, Any], text: str) -> None:
        self.rejects.append({"reason": reason, **where, "text": text[:300]})

    def round(self, parent: str, round_no: int) -> str | None:
        """One Suggester -> Editor -> Solver round; the next parent, or None when the chain stops."""
        where = {"round": round_no}
        s_prompt, s_texts = self.ask("suggester", {"problem": parent}, 1)
        try:
            suggestions = read(self.roles["suggester"], s_texts[0], {"problem": parent})
        except Reject as rej:
            self.reject(rej.reason, where, s_texts[0])
            return None
        listed = "\n".join(f"{i}. {s}" for i, s in enumerate(suggestions, start=1))
        e_prompt, e_texts = self.ask("editor", {"problem": parent, "suggestions": listed}, self.cfg.edits_per_round)
        next_parent, seen = None, set()
        for sample, text in enumerate(e_texts):
            where = {"round": round_no, "sample": sample}
            try:
                edit = read(self.roles["editor"], text, {"problem": parent})
            except Reject as rej:
                self.reject(rej.reason, where, text)
                continue
            if edit["problem"] in seen:
                self.reject("editor:repeated_sample", where, text)
                continue
            seen.add(edit["problem"])
            hashes = {"suggester": text_hash(s_prompt), "editor": text_hash(e_prompt)}
            kept = self.solve(edit["problem"], edit["answer"], {**where, "parent": text_hash(parent)}, hashes)
            next_parent = next_parent or (edit["problem"] if kept else None)
        return next_parent

    def solve(self, problem: str, reference: str | None, where: dict[str, Any], hashes: dict[str, str]) -> bool:
        """Solve ``problem``; keep it when verified (see the module docstring). True when kept."""
        prompt, texts = self.ask("solver", {"problem": problem}, self.cfg.solver_samples)
        self.solved += 1
        answers, reasons = [], []
        for text in texts:
            try:
                answers.append(read(self.roles["solver"], text, {"problem": problem}))
            except Reject as rej:
                reasons.append(rej.reason)
        chosen, how = _verify(answers, reference, self.cfg.agreement)
        if chosen is None:
            reason = how if answers else reasons[0]
            self.reject(reason, where, f"{problem}\n---\n{texts[0] if texts else ''}")
            return False
        hashes = {**hashes, "solver": text_hash(prompt)}
        if self.cfg.verifier and not self.accepted(problem, chosen["solution"], where, hashes):
            return False
        roles = (["solver"] if where["round"] == 0 else ["suggester", "editor", "solver"])
        roles += ["verifier"] if self.cfg.verifier else []
        self.rows.append(self.row(problem, chosen, how, where, hashes, roles))
        return True

    def accepted(self, problem: str, solution: str, where: dict[str, Any], hashes: dict[str, str]) -> bool:
        """The Verifier's verdict on a problem and its kept solution (a rejection is recorded)."""
        context = {"problem": problem, "solution": solution}
        prompt, texts = self.ask("verifier", context, 1)
        hashes["verifier"] = text_hash(prompt)
        try:
            if read(self.roles["verifier"], texts[0], context):
                return True
            reason = "verifier:incorrect"
        except Reject as rej:
            reason = rej.reason
        self.reject(reason, where, f"{problem}\n---\n{solution}\n---\n{texts[0]}")
        return False

    def row(self, problem: str, answer: dict[str, str], how: str, where: dict[str, Any], hashes: dict[str, str],
            roles: list[str]) -> dict[str, Any]:
        backends = {role: self.teacher.backend(role) for role in roles}
        provenance = {
            "pipeline": "orca_math", "seed_id": self.item_id, **where, "verified_by": how,
            "roles": {role: b.name for role, b in backends.items()}, "prompt_hashes": hashes,
            "rule_based": any(getattr(b, "rule_based", False) for b in backends.values()),
        }
        return {"prompt": problem, "completion": answer["solution"], "answer": answer["answer"],
                "meta": {"source": "synth", "synth": provenance}}


def _verify(answers: list[dict[str, str]], reference: str | None, agreement: int) -> tuple[dict | None, str]:
    """(the kept solver answer or None, how it was verified or why it was not)."""
    if reference is not None:
        match = next((a for a in answers if a["answer"] == reference), None)
        return (match, "reference") if match else (None, "verify:disagrees_with_reference")
    counts = Counter(a["answer"] for a in answers)
    if counts and counts.most_common(1)[0][1] >= agreement:
        best = counts.most_common(1)[0][0]
        return next(a for a in answers if a["answer"] == best), "agreement"
    return None, "verify:no_agreement"


def extra_stats(items: list[tuple[str, dict[str, Any]]], records: list[dict], rows: list[dict]) -> dict[str, Any]:
    """Mean solution steps of the seeds (those with a solution) and of the kept synthetic rows, rows per round."""
    from slmkit.synth.math_story import count_steps

    seeds = [count_steps(p["seed"]["completion"]) for _, p in items if p["seed"].get("completion")]
    synthetic = [count_steps(r["completion"]) for r in rows if r["meta"]["synth"]["round"] > 0]
    return {"mean_steps_seeds": round(sum(seeds) / len(seeds), 3) if seeds else 0.0,
            "mean_steps_rows": round(sum(synthetic) / len(synthetic), 3) if synthetic else 0.0,
            "rows_by_round": dict(sorted(Counter(str(r["meta"]["synth"]["round"]) for r in rows).items()))}
