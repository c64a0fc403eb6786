"""Distillation batches: one example seen by two models, and the alignment of their target positions.

The student reads its prompt and learns the target (decoder-only: ``prompt + target`` with the prompt
masked; encoder–decoder: prompt in the encoder, target in the decoder). The teacher, of either kind,
reads its own prompt + the same target text. Token j of the student's target must be compared with the
teacher's prediction of the same token, wherever each model keeps it:

* a decoder-only model predicts the token at position p from position p-1, and the target's start
  depends on the prompt length and the padding side of each row;
* an encoder–decoder model predicts target token j at decoder position j.

Both sides are therefore brought to one *target-major* layout ``[B, J, ...]`` (index j = target token j)
by :func:`gather_positions` with a per-row table of positions: ``teacher_target_pos`` is built here, when
the rows are padded; the student's is read off its aligned labels (:func:`target_positions`), so any
student layout works. A position of -1 means "no prediction" (e.g. cut by truncation) and is masked.

With one tokenizer, student token j is teacher token j. With two tokenizers (ULD), student token j is
matched to the teacher token that starts at the same character of the target text (character-offset
span alignment); tokens whose start has no counterpart in the other tokenization get no KD term.

:class:`DistillCollate` makes the training loop's batches from these pieces (and replaces targets by
on-policy student samples when asked). Reads/writes nothing.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from slmkit.train.batching import IGNORE, truncate


def completion_starts(tokenizer: Any, text: str) -> tuple[list[int], list[int]]:
    """Ids of a completion exactly as ``encode_completion`` makes them, and where each token starts.

    The start of a token is its first non-space character (byte-level BPE puts the space inside the token,
    SentencePiece-style offsets may trim it), so two tokenizers agree on where a word begins. EOS starts
    at the end of the text.
    """
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    starts = []
    for begin, end in enc["offset_mapping"]:
        while begin < end and text[begin].isspace():
            begin += 1
        starts.append(begin)
    return enc["input_ids"] + [tokenizer.eos_token_id], starts + [len(text)]


def offset_map(student_starts: list[int], teacher_starts: list[int]) -> list[int]:
    """For each student target token, the teacher token starting at the same character (-1 if none)."""
    first: dict[int, int] = {}
    for k, start in enumerate(teacher_starts):
        first.setdefault(start, k)  # a zero-width piece shares its start; the first one is the real token
    used: set[int] = set()
    out = []
    for start in student_starts:
        k = first.get(start, -1)
        out.append(-1 if k in used else k)
        used.add(k)
    return out


@dataclass(frozen=True)
class Sides:
    """How each model reads text: tokenizers, prompt formats, truncation and layout."""

    student_tok: Any
    teacher_tok: Any
    student_format: str
    teacher_format: str
    student_max_length: int
    teacher_max_length: int
    student_start: int | None  # decoder-start id: encoder–decoder student; None: decoder-only
    teacher_start: int | None
    teacher_padding_side: str = "right"
    by_offsets: bool = False   # True: two tokenizers, align targets by character offsets


def encode_example(index: int, prompt: str, completion: str, sides: Sides) -> dict[str, Any]:
    """Token ids of one (prompt, target) pair for both models and the student→teacher target map."""
    from slmkit.data.format import encode_completion, encode_prompt

    example = {"index": index, "prompt": prompt, "completion": completion,
               "prompt_ids": encode_prompt(sides.student_tok, prompt, sides.student_format),
               "teacher_prompt_ids": encode_prompt(sides.teacher_tok, prompt, sides.teacher_format)}
    if sides.by_offsets:
        s_ids, s_starts = completion_starts(sides.student_tok, completion)
        t_ids, t_starts = completion_starts(sides.teacher_tok, completion)
        example.update(completion_ids=s_ids, teacher_completion_ids=t_ids, target_map=offset_map(s_starts, t_starts))
    else:
        ids = encode_completion(sides.student_tok, completion)
        example.update(completion_ids=ids, teacher_completion_ids=ids, target_map=list(range(len(ids))))
    return example


def student_targets(example: dict[str, Any], sides: Sides) -> tuple[int, int]:
    """(first, count): the student scores completion tokens [first, first + count) after truncation.

    ``first`` is 1 only for a decoder-only student whose prompt was cut away entirely: its first
    completion token then sits at position 0 and has no position before it to be predicted from.
    """
    prompt, completion = truncate(example["prompt_ids"], example["completion_ids"], sides.student_max_length,
                                  sides.student_start is not None)
    first = 1 if sides.student_start is None and not prompt and completion else 0
    return first, len(completion) - first


def collate_teacher(examples: list[dict[str, Any]], sides: Sides) -> dict[str, Any]:
    """The teacher's padded inputs plus ``teacher_target_pos`` [B, J]: for the student's j-th scored target
    token, the position in the teacher's logits that predicts the same token (-1: none)."""
    import torch

    from slmkit.models.generate import pad_batch
    from slmkit.train.batching import collate

    pad = sides.teacher_tok.pad_token_id
    spans = [student_targets(e, sides) for e in examples]
    pos = torch.full((len(examples), max(1, max(n for _, n in spans))), -1, dtype=torch.long)
    encdec = sides.teacher_start is not None
    cut = [truncate(e["teacher_prompt_ids"], e["teacher_completion_ids"], sides.teacher_max_length, encdec)
           for e in examples]
    if encdec:
        batch = collate([{"prompt_ids": p, "completion_ids": c} for p, c in cut], pad, sides.teacher_max_length,
                        decoder_start_id=sides.teacher_start)
        out = {"teacher_" + k: v for k, v in batch.items() if k != "labels"}
        before = [0] * len(cut)  # decoder position k predicts target token k
    else:
        left = sides.teacher_padding_side == "left"
        ids, mask = pad_batch([p + c for p, c in cut], pad, left=left)
        out = {"teacher_input_ids": ids, "teacher_attention_mask": mask}
        if left:  # positions count real tokens only, as in generation
            out["teacher_position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0)
        # target token k sits at (left padding) + len(prompt) + k and is predicted one position earlier
        before = [(ids.shape[1] - len(p) - len(c) if left else 0) + len(p) - 1 for p, c in cut]
    for b, (example, (first, count)) in enumerate(zip(examples, spans)):
        n_teacher = len(cut[b][1])
        lowest = 0 if encdec else 1 - len(cut[b][0])  # a decoder needs a token before the target
        for j in range(count):
            k = example["target_map"][first + j]
            if lowest <= k < n_teacher and k >= 0:
                pos[b, j] = before[b] + k
    out["teacher_target_pos"] = pos
    return out


class DistillCollate:
    """Makes the loop's batches: the student's tensors plus the teacher's inputs (online) or its cached
    top-k rows (offline); in training, with probability λ, the targets are first replaced by samples of
    the current student (on-policy). The coin is a pure function of the seed and the batch's examples,
    so a resumed run replays the same choices; evaluation (student in eval mode) never samples."""

    def __init__(self, sides: Any, student: Any, *, reader: Any = None, on_policy: float = 0.0,
                 sample_temperature: float = 1.0, sample_tokens: int = 128, seed: int = 0):
        self.sides, self.student, self.reader = sides, student, reader
        self.on_policy, self.seed = on_policy, seed
        self.sample_temperature, self.sample_tokens = sample_temperature, sample_tokens

    def target_count(self, example: dict[str, Any]) -> int:
        return student_targets(example, self.sides)[1]

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        from slmkit.train.batching import collate

        coin = random.Random(f"{self.seed}:{[e['index'] for e in examples]}")
        sampled = self.on_policy > 0 and self.student.training and coin.random() < self.on_policy
        if sampled:
            examples = self.sample(examples, coin.randrange(2 ** 31))
        sides = self.sides
        batch = collate(examples, sides.student_tok.pad_token_id, sides.student_max_length, sides.student_start)
        if self.reader is not None:
            width = max(1, max(self.target_count(e) for e in examples))
            batch.update(self.reader.batch([e["index"] for e in examples], width))
        else:
            batch.update(collate_teacher(examples, sides))
        batch["on_policy"] = torch.tensor(float(sampled))
        return batch

    def sample(self, examples: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
        """The same prompts with targets sampled from the current student, in one generation batch."""
        import torch

        from slmkit.models.generate import GenerateConfig, generate

        sides, model = self.sides, self.student
        gen = GenerateConfig(max_new_tokens=self.sample_tokens, temperature=self.sample_temperature, seed=seed,
                             batch_size=len(examples), prompt_format=sides.student_format)
        device = next(model.parameters()).device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):  # generate() reseeds
            outs = generate(model, sides.student_tok, [e["prompt"] for e in examples], gen, show_progress=False)
        model.train()
        return [encode_example(e["index"], e["prompt"], o.texts[0], sides) for e, o in zip(examples, outs)]


def teacher_logits(teacher: Any, batch: dict[str, Any]) -> Any:
    """The frozen teacher's logits for the ``teacher_*`` inputs of a batch (no gradient)."""
    import torch

    keys = ("input_ids", "attention_mask", "position_ids", "decoder_input_ids", "decoder_attention_mask")
    inputs = {k: batch["teacher_" + k] for k in keys if "teacher_" + k in batch}
    with torch.no_grad():
        return teacher(**inputs, use_cache=False).logits


def target_positions(labels: Any) -> Any:
    """[B, J] position of the student's j-th target token in its aligned logits (-1 past the row's end)."""
    import torch

    mask = labels != IGNORE
    count = mask.sum(-1)
    width = max(1, int(count.max()) if count.numel() else 1)
    cols = torch.arange(labels.shape[1], device=labels.device).expand_as(labels)
    # sort the target columns first (stable), keeping their order: the j-th entry is the j-th target
    order = torch.where(mask, cols, cols + labels.shape[1]).argsort(dim=-1, stable=True)[:, :width]
    j = torch.arange(width, device=labels.device).expand(labels.shape[0], width)
    return torch.where(j < count.unsqueeze(-1), order, torch.full_like(order, -1))


def gather_positions(x: Any, index: Any) -> tuple[Any, Any]:
    """``x[b, index[b, j]]`` for every (b, j) with index ≥ 0, as [B, J, ...], and the valid mask [B, J]."""
    valid = index >= 0
    safe = index.clamp(min=0)
    shape = (*safe.shape, *x.shape[2:])
    flat = safe.reshape(*safe.shape, *([1] * (x.dim() - 2))).expand(shape)
    return x.gather(1, flat), valid


def student_side(logits: Any, labels: Any) -> tuple[Any, Any]:
    """The student's logits in target-major layout [B, J, V] and the mask of real targets [B, J]."""
    return gather_positions(logits, target_positions(labels))


def teacher_side(logits: Any, teacher_target_pos: Any) -> tuple[Any, Any]:
    """The teacher's logits in target-major layout [B, J, V] and the mask of tokens it predicts [B, J]."""
    return gather_positions(logits, teacher_target_pos)
