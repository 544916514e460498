"""Prompt sources: where the rollout loop's prompts come from.

A prompt has text and a key (a label for metrics, e.g. the reader it names). Training prompts
and held-out evaluation prompts are kept apart.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from rewardloop.errors import InvalidInput


def encode_prompt(tokenizer, text: str) -> list[int]:
    """A prompt's token ids as the policy should see it: through the tokenizer's chat template
    (one user turn, then the assistant's opening, `add_generation_prompt`) when it has one, so
    an instruct model is asked the way it was trained; else the plain text, no special tokens.
    `model.chat_template: none` makes `load_policy` drop the template, and with it this step."""
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True
        )
        if isinstance(ids, dict) or hasattr(ids, "keys"):  # a BatchEncoding in newer versions
            ids = ids["input_ids"]
        return list(ids)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@dataclass(frozen=True)
class Prompt:
    text: str
    key: str = ""


class PromptSource:
    """A fixed list of training prompts and one of held-out evaluation prompts."""

    def __init__(self, train: list[Prompt], evaluation: list[Prompt] | None = None):
        if not train:
            raise InvalidInput("prompts", "the prompt source has no training prompts")
        self.train = list(train)
        self.evaluation = list(evaluation or train)

    def sample(self, n: int, rng: random.Random) -> list[Prompt]:
        """n prompts, cycling through the keys so every key is seen evenly."""
        keys = sorted({p.key for p in self.train})
        by_key = {k: [p for p in self.train if p.key == k] for k in keys}
        start = rng.randrange(len(keys))
        return [rng.choice(by_key[keys[(start + i) % len(keys)]]) for i in range(n)]

    @classmethod
    def from_jsonl(cls, path: str | Path) -> PromptSource:
        """One JSON object per line: {"text": ..., "key": ..., "split": "train"|"eval"}."""
        train, evaluation = [], []
        for n, line in enumerate(Path(path).read_text().splitlines(), start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise InvalidInput(f"{path}:{n}.text", "each line needs a string field `text`")
            prompt = Prompt(row["text"], str(row.get("key", "")))
            (evaluation if row.get("split") == "eval" else train).append(prompt)
        return cls(train, evaluation or None)
