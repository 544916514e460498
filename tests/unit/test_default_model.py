"""The default model build (tiny settings, tmp cache) and policy loading from local HF directories."""

from __future__ import annotations

import json
import threading

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel

from rewardloop.config import ModelConfig
from rewardloop.errors import ConfigError
from rewardloop.modeling import load_policy
from rewardloop.tasks.newsfeed import build
from rewardloop.tasks.newsfeed.build import RECIPE
from rewardloop.tasks.newsfeed.build import first_words as opening_words
from rewardloop.tinymodel.recipe import train_tokenizer as train_recipe_tokenizer
from rewardloop.tinymodel.tokenizer import train_tokenizer


def tiny_cfg(cache_dir, **kw) -> ModelConfig:
    base = dict(
        cache_dir=str(cache_dir), pretrain_seconds=2.0, vocab_size=400, n_layer=1, n_embd=32
    )
    return ModelConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Two threads ask for the same model at once; count how many builds really ran."""
    torch.set_num_threads(1)
    cache = tmp_path_factory.mktemp("cache")
    cfg = tiny_cfg(cache)
    real_build, calls, paths = build.build_default_model, [], []

    def counting_build(*args, **kwargs):
        calls.append(1)
        return real_build(*args, **kwargs)

    mp = pytest.MonkeyPatch()
    mp.setattr(build, "build_default_model", counting_build)
    try:
        threads = [
            threading.Thread(target=lambda: paths.append(build.ensure_default_model(cfg)))
            for _ in range(2)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        mp.undo()
    return cfg, paths, len(calls)


def test_concurrent_requests_build_once_into_the_keyed_cache(built):
    cfg, paths, builds = built
    assert builds == 1
    assert len(paths) == 2 and paths[0] == paths[1] == build.cache_path(cfg)
    assert paths[0].parent == build.cache_path(cfg).parent
    leftovers = [p.name for p in paths[0].parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # the temporary build directory was renamed away


def test_build_info_reports_the_build(built):
    cfg, paths, _ = built
    info = json.loads((paths[0] / "build_info.json").read_text())
    assert info["key"] == build.build_key(cfg, 0)
    assert info["pretrain"]["steps"] > 0 and info["seconds"] > 0
    assert 0.0 <= info["well_formed"] <= 1.0
    assert sum(info["topic_histogram"].values()) == 3 * 96
    assert set(info["like_rate"]) == {"alice", "bob", "carol"}


def test_plain_transformers_loads_the_built_model(built):
    _, paths, _ = built
    tok = AutoTokenizer.from_pretrained(paths[0], local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(paths[0], local_files_only=True)
    assert len(tok) <= 400 and model.config.vocab_size == len(tok)
    assert tok.eos_token_id is not None and tok.pad_token_id is not None
    assert tok.pad_token_id != tok.eos_token_id
    ids = tok("Monday noon feed for bob", return_tensors="pt", add_special_tokens=False).input_ids
    assert model(ids).logits.shape == (1, ids.shape[1], len(tok))
    assert (
        tok.decode(tok(" Chipmaker ships new processor").input_ids)
        == " Chipmaker ships new processor"
    )


def test_second_call_reuses_the_cache(built, monkeypatch):
    cfg, paths, _ = built
    before = (paths[0] / "model.safetensors").stat().st_mtime_ns

    def must_not_build(*args, **kwargs):
        raise AssertionError("rebuilt a cached model")

    monkeypatch.setattr(build, "build_default_model", must_not_build)
    assert build.ensure_default_model(cfg) == paths[0]
    assert (paths[0] / "model.safetensors").stat().st_mtime_ns == before


def test_changed_settings_get_another_cache_entry(tmp_path):
    cfg = tiny_cfg(tmp_path)
    others = [tiny_cfg(tmp_path, vocab_size=512), tiny_cfg(tmp_path, pretrain_seconds=3.0)]
    assert len({build.cache_path(cfg), *(build.cache_path(o) for o in others)}) == 3
    assert build.cache_path(cfg, seed=1) != build.cache_path(cfg, seed=0)


def test_load_policy_default_uses_the_built_model(built):
    cfg, paths, _ = built
    model, tok, path = load_policy(cfg)
    assert path == str(paths[0])
    assert model.config.pad_token_id == tok.pad_token_id
    assert not model.training


@pytest.fixture
def saved_tiny_gpt2(tmp_path, monkeypatch):
    """A tiny GPT-2 + tokenizer saved locally, the tokenizer without a pad token."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tok = train_tokenizer(["a tiny corpus for a tiny tokenizer"] * 10, vocab_size=300)
    tok.pad_token = None
    torch.manual_seed(0)
    model = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=len(tok),
            n_positions=32,
            n_embd=16,
            n_layer=1,
            n_head=2,
            bos_token_id=tok.eos_token_id,
            eos_token_id=tok.eos_token_id,
        )
    )
    model.save_pretrained(tmp_path / "tiny")
    tok.save_pretrained(tmp_path / "tiny")
    return tmp_path / "tiny", model


def test_load_policy_from_a_local_directory_sets_pad_to_eos(saved_tiny_gpt2):
    directory, original = saved_tiny_gpt2
    model, tok, path = load_policy(ModelConfig(name_or_path=str(directory)))
    assert path == str(directory)
    assert tok.pad_token_id == tok.eos_token_id == original.config.eos_token_id
    assert model.config.pad_token_id == tok.eos_token_id
    for (name, a), b in zip(
        model.state_dict().items(), original.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name


def test_load_policy_names_the_key_when_nothing_is_there(tmp_path):
    with pytest.raises(ConfigError, match="model.name_or_path"):
        load_policy(ModelConfig(name_or_path=str(tmp_path / "missing")))
    with pytest.raises(ConfigError, match="model.name_or_path"):
        load_policy(ModelConfig(name_or_path="nobody/no-such-model-here"))


def test_default_tokenizer_gives_each_opening_word_one_token():
    """The first headline token then names the topic: what makes the taste quick to learn."""
    tok = train_recipe_tokenizer(RECIPE, 1024, n=5000)
    assert len(tok) == 1024
    multi = [
        w for w in opening_words() if len(tok(" " + w, add_special_tokens=False).input_ids) != 1
    ]
    assert multi == []
    prompt = tok("Friday night feed for carol", add_special_tokens=False).input_ids
    assert tok.convert_ids_to_tokens(prompt[-1:]) == ["Ġcarol"]  # the name is the last token
