"""Prompts of the help-desk example: a customer's question, then the agent's turn.

    Customer: Hi, I forgot my password
    Agent:

A question is one of the category's questions with a greeting and a sign-off around it; a
fixed fifth of the (question, greeting, sign-off) combinations is held out for evaluation, so
`eval_prompts()` measures answers to prompts never trained on. `Prompt.key` is the category.

Token contract (shared by pre-training, rollout workers and evaluation): prompt ids are
`tokenizer(prompt.text, add_special_tokens=False)`; a completion is `" " + answer` followed by
the tokenizer's eos token. No bos token is prepended.
"""

from __future__ import annotations

from rewardloop.prompts import Prompt, PromptSource

from .corpus import CATEGORIES, QUESTIONS

GREETINGS = ("", "Hi, ", "Hello, ", "Hey, ")
SIGN_OFFS = ("", " Thanks.")
PREFIX, SUFFIX = "Customer: ", "\nAgent:"


def prompt_text(question: str) -> str:
    return f"{PREFIX}{question}{SUFFIX}"


def question_of(prompt: str) -> str:
    """The customer's words inside a prompt (the prompt itself if it has another shape)."""
    return prompt.removeprefix(PREFIX).removesuffix(SUFFIX).strip()


def completion_text(answer: str) -> str:
    """The completion a policy should write for an answer (eos is appended as a token)."""
    return " " + answer.strip()


def _sentence(greeting: str, question: str) -> str:
    if not question.endswith("?"):
        question += "."
    if greeting and not question.startswith("I "):
        question = question[:1].lower() + question[1:]
    return greeting + question


def _prompts(held_out: bool) -> list[Prompt]:
    out = []
    for category in CATEGORIES:
        for i, question in enumerate(QUESTIONS[category]):
            for j, greeting in enumerate(GREETINGS):
                for k, sign_off in enumerate(SIGN_OFFS):
                    if ((i + 2 * j + 3 * k) % 5 == 0) == held_out:
                        text = _sentence(greeting, question) + sign_off
                        out.append(Prompt(prompt_text(text), category))
    return out


def train_prompts() -> list[Prompt]:
    """Four fifths of the prompts of every category."""
    return _prompts(held_out=False)


def eval_prompts() -> list[Prompt]:
    """The held-out fifth, disjoint from training."""
    return _prompts(held_out=True)


def prompt_source() -> PromptSource:
    """Training and held-out prompts; `Prompt.key` is the category."""
    return PromptSource(train_prompts(), eval_prompts())
