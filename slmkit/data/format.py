"""Prompt formats and token encoding of (prompt, completion) pairs, shared by training, eval and serving.

Two formats: ``plain`` (the prompt text and a newline, with the tokenizer's own special tokens, e.g. a
leading ``<s>``) and ``chat`` (the tokenizer's chat template with one user turn and the generation
prompt). Completions are encoded without special tokens and end with EOS. Encoding prompt and
completion separately keeps the prompt/completion boundary exact, and matches what generation sees.
"""

from __future__ import annotations

from typing import Any

from slmkit.errors import ConfigError

PROMPT_FORMATS = ("plain", "chat")


def format_prompt(tokenizer: Any, prompt: str, prompt_format: str) -> str:
    """The text the model reads before its answer."""
    if prompt_format == "plain":
        return prompt + "\n"
    if prompt_format == "chat":
        if not getattr(tokenizer, "chat_template", None):
            raise ConfigError("prompt_format 'chat' needs a tokenizer with a chat template")
        return tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                             add_generation_prompt=True, tokenize=False)
    raise ConfigError(f"unknown prompt_format '{prompt_format}' (use one of {PROMPT_FORMATS})")


def encode_prompt(tokenizer: Any, prompt: str, prompt_format: str) -> list[int]:
    """Token ids of a formatted prompt (a chat template already holds its special tokens)."""
    text = format_prompt(tokenizer, prompt, prompt_format)
    return tokenizer(text, add_special_tokens=prompt_format == "plain")["input_ids"]


def encode_completion(tokenizer: Any, completion: str) -> list[int]:
    """Token ids of a completion, ending with EOS."""
    return tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]


def encode_pair(tokenizer: Any, prompt: str, completion: str, prompt_format: str) -> dict[str, list[int]]:
    """``{"prompt_ids", "completion_ids"}``: the unit every training collator consumes."""
    return {"prompt_ids": encode_prompt(tokenizer, prompt, prompt_format),
            "completion_ids": encode_completion(tokenizer, completion)}
