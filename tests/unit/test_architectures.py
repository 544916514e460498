"""Llama-, Qwen2- and GPT-2-shaped models (tiny, random, built locally): padding and position
ids are right for each, each learns a toy preference, and prompts go through a tokenizer's
chat template when it has one."""

from __future__ import annotations

import random

import pytest
import torch

from rewardloop.config import LearnerConfig, load_config
from rewardloop.learner.batching import collate, completion_logprobs
from rewardloop.learner.trainer import Trainer
from rewardloop.modeling import load_policy
from rewardloop.prompts import Prompt, PromptSource, encode_prompt
from rewardloop.sampling import left_pad, sample_completions
from rewardloop.tinymodel.architectures import ARCHITECTURES, build_dir, tiny_model
from rewardloop.tinymodel.tokenizer import train_tokenizer
from rewardloop.trajectory import Trajectory

EOS, PAD = 0, 1
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def alone_logprobs(model, prompt: list[int], completion: list[int]) -> torch.Tensor:
    """log p(completion token) with the sequence alone in its batch: no padding at all."""
    ids = torch.tensor([prompt + completion])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
    at = torch.arange(len(prompt) - 1, len(prompt) - 1 + len(completion))
    return logp[at, torch.tensor(completion)]


def uneven_rows(vocab: int, seed: int = 0):
    rng = random.Random(seed)
    rows = []
    for p_len, c_len in [(2, 7), (9, 1), (5, 4), (1, 6)]:  # every row padded somewhere
        prompt = [rng.randrange(2, vocab) for _ in range(p_len)]
        rows.append((prompt, [rng.randrange(2, vocab) for _ in range(c_len)]))
    return rows


def as_groups(rows, logprobs=None):
    return [
        [
            Trajectory(
                id=str(i),
                group_id="g",
                prompt_ids=p,
                completion_ids=c,
                behavior_logprobs=logprobs[i] if logprobs else [0.0] * len(c),
                reward=float(i),
                policy_version=0,
            )
            for i, (p, c) in enumerate(rows)
        ]
    ]


@pytest.mark.parametrize("kind", ARCHITECTURES)
@pytest.mark.parametrize("chunk_rows", [128, 0])  # fused output layer / plain logits path
def test_learner_logprobs_on_a_right_padded_batch_equal_each_sequence_alone(kind, chunk_rows):
    model = tiny_model(kind, 40, EOS, PAD, width=32).eval()
    rows = uneven_rows(40)
    batch = collate(as_groups(rows), PAD)
    with torch.no_grad():
        logprobs, _ = completion_logprobs(model, batch, chunk_rows=chunk_rows)
    for i, (prompt, completion) in enumerate(rows):
        got = logprobs[i, : len(completion)]
        torch.testing.assert_close(
            got, alone_logprobs(model, prompt, completion), atol=1e-5, rtol=0
        )
        assert bool((logprobs[i, len(completion) :] == 0).all())  # padding: exactly 0


@pytest.mark.parametrize("kind", ARCHITECTURES)
def test_sampled_behavior_logprobs_from_left_padding_match_the_learner(kind):
    """The workers left-pad prompts with explicit position ids; what they record must be what
    the learner recomputes on its right-padded batch, for every family."""
    model = tiny_model(kind, 40, EOS, PAD, width=32).eval()
    prompts = [p for p, _ in uneven_rows(40, seed=3)]
    gen = torch.Generator().manual_seed(0)
    samples = sample_completions(model, prompts, 2, 6, EOS, PAD, generator=gen)
    rows = [(prompts[s.prompt_index], s.completion_ids) for s in samples]
    batch = collate(as_groups(rows, [s.logprobs for s in samples]), PAD)
    with torch.no_grad():
        learner, _ = completion_logprobs(model, batch)
    torch.testing.assert_close(learner * batch.mask, batch.behavior_logprobs, atol=1e-4, rtol=0)


def test_left_padding_without_position_ids_would_be_wrong_for_absolute_positions():
    """The control that makes the two tests above able to fail: GPT-2's learned absolute
    positions shift with the left padding unless position ids start at each row's first real
    token (rotary models are shift-invariant, so only GPT-2 shows it)."""
    model = tiny_model("gpt2", 40, EOS, PAD, width=32).eval()
    short, long_ = [5, 6], [7, 8, 9, 10, 11, 12]
    ids, mask = left_pad([short, long_], PAD)
    with torch.no_grad():
        alone = model(input_ids=torch.tensor([short])).logits[0, -1]
        right = (mask.cumsum(-1) - 1).clamp(min=0)
        with_ids = model(input_ids=ids, attention_mask=mask, position_ids=right).logits[0, -1]
        without = model(input_ids=ids, attention_mask=mask).logits[0, -1]
    torch.testing.assert_close(with_ids, alone, atol=1e-5, rtol=0)
    assert (without - alone).abs().max() > 1e-3


GOOD, PROMPT = 7, [3, 4, 5]


def p_good(model) -> float:
    with torch.no_grad():
        return torch.softmax(model(input_ids=torch.tensor([PROMPT])).logits[0, -1], -1)[GOOD].item()


@pytest.mark.parametrize("kind", ARCHITECTURES)
def test_each_architecture_learns_the_preferred_token(kind):
    torch.set_num_threads(1)
    model = tiny_model(kind, 16, EOS, PAD, width=32, layers=1).eval()
    start = p_good(model)
    trainer = Trainer(model, LearnerConfig(lr=2e-2), pad_id=PAD)
    for step in range(20):
        gen = torch.Generator().manual_seed(step)
        samples = sample_completions(model, [PROMPT] * 4, 8, 3, EOS, PAD, generator=gen)
        groups = [[] for _ in range(4)]
        for i, s in enumerate(samples):
            groups[s.prompt_index].append(
                Trajectory(
                    id=f"{step}-{i}",
                    group_id=str(s.prompt_index),
                    prompt_ids=PROMPT,
                    completion_ids=s.completion_ids,
                    behavior_logprobs=s.logprobs,
                    reward=float(s.completion_ids[0] == GOOD),
                    policy_version=trainer.version,
                )
            )
        assert trainer.step(groups)["skipped"] == 0
    assert p_good(model) > max(0.5, 3 * start), (kind, start, p_good(model))


@pytest.fixture(scope="module")
def chat_model_dir(tmp_path_factory):
    texts = ["feed for alice", "feed for bob", " sports news", " weather today"] * 20
    tok = train_tokenizer(texts, 300)
    tok.chat_template = CHATML
    return build_dir("qwen2", tok, tmp_path_factory.mktemp("qwen2-chat"), width=32, layers=1)


def test_prompts_go_through_the_chat_template_when_the_tokenizer_has_one(chat_model_dir):
    from rewardloop.actors.rollout import RolloutWorker
    from rewardloop.scoring import Score
    from rewardloop.sink import ListSink

    class Constant:
        def score(self, items):
            return [Score(0.5, source="constant") for _ in items]

        def poll(self, timeout_s=0.0):
            return []

    sets = [f"model.name_or_path={chat_model_dir}", "rollout.max_new_tokens=3"]
    cfg = load_config(None, sets + ["rollout.group_size=2"])
    model, tok, _ = load_policy(cfg)
    source = PromptSource([Prompt("feed for bob", "bob")])
    worker = RolloutWorker("w", cfg, model, tok, source, Constant(), ListSink())
    trajectories = worker.generate(1)
    expected = tok.apply_chat_template(
        [{"role": "user", "content": "feed for bob"}], add_generation_prompt=True, tokenize=True
    )
    expected = expected["input_ids"] if hasattr(expected, "keys") else list(expected)
    assert [list(t.prompt_ids) for t in trajectories] == [expected, expected]
    text = tok.decode(trajectories[0].prompt_ids)
    assert text == "<|im_start|>user\nfeed for bob<|im_end|>\n<|im_start|>assistant\n"
    # model.chat_template: none -> the plain prompt text, as for a tokenizer without one
    _, plain_tok, _ = load_policy(load_config(None, sets + ["model.chat_template=none"]))
    assert encode_prompt(plain_tok, "feed for bob") == plain_tok("feed for bob")["input_ids"]
    assert encode_prompt(plain_tok, "feed for bob") != expected
