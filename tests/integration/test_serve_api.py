"""The OpenAI-compatible API through the official `openai` client: plain, chat, streaming and
errors (bad key, unknown model, bad field, too large, queue full -> 429 with Retry-After)."""

from __future__ import annotations

import threading

import pytest
from serve_testutil import build, client, post

openai = pytest.importorskip("openai")


@pytest.fixture
def served(model_cache, tmp_path):
    st = build(tmp_path)
    yield st
    st.stop()


def test_plain_chat_and_models(served):
    c = client(served)
    r = c.completions.create(model="rewardloop", prompt="Friday night feed for bob",
                             max_tokens=8, user="u1")  # fmt: skip
    assert r.id.startswith("cmpl-") and r.model == "rewardloop-v0" and r.system_fingerprint == "v0"
    assert r.choices[0].text and r.usage.completion_tokens <= 8
    logged = served.log.response(r.id)
    assert logged["version"] == 0 and len(logged["logprobs"]) == len(logged["completion_ids"])
    assert logged["user_key"] == served.log.user_key("u1")
    chat = c.chat.completions.create(
        model="rewardloop", messages=[{"role": "user", "content": "Monday morning feed for alice"}],
        n=3, user="u2", temperature=0.7,
    )  # fmt: skip
    assert chat.object == "chat.completion" and len(chat.choices) == 3
    assert all(ch.message.role == "assistant" for ch in chat.choices)
    ids = [served.log.response(f"{chat.id}-{i}" if i else chat.id) for i in range(3)]
    assert all(x is not None for x in ids)
    assert {m.id for m in c.models.list()} == {"rewardloop", "rewardloop-v0"}


def test_streaming_matches_the_logged_completion(served):
    c = client(served)
    chunks = list(c.completions.create(model="rewardloop", prompt="Sunday noon feed for carol",
                                       stream=True, user="u3"))  # fmt: skip
    text = "".join(ch.choices[0].text for ch in chunks)
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    logged = served.log.response(chunks[0].id)
    ids = [t for t in logged["completion_ids"] if t != served.core.tokenizer.eos_token_id]
    assert text == served.core.tokenizer.decode(ids, skip_special_tokens=True)
    chat = list(c.chat.completions.create(model="rewardloop", stream=True,
                                          messages=[{"role": "user", "content": "hi"}]))  # fmt: skip
    assert chat[0].choices[0].delta.role == "assistant"
    assert chat[-1].choices[0].finish_reason in ("stop", "length")


def test_errors_in_openai_shape(served):
    with pytest.raises(openai.AuthenticationError) as e:
        client(served, key="wrong").models.list()
    assert e.value.body["code"] == "invalid_api_key"
    c = client(served)
    with pytest.raises(openai.NotFoundError):
        c.completions.create(model="gpt-4", prompt="x")
    with pytest.raises(openai.BadRequestError) as e:
        c.completions.create(model="rewardloop", prompt="x", max_tokens=10_000)
    assert e.value.body["param"] == "max_tokens"
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model="rewardloop", messages=[{"role": "nobody", "content": "x"}])
    assert "messages[0].role" in e.value.body["message"]
    status, body = post(f"{served.server.url}/v1/completions",
                        {"model": "rewardloop", "prompt": "x" * 70_000})  # fmt: skip
    assert status == 413 and body["error"]["type"] == "invalid_request_error"


def test_queue_full_is_429_with_retry_after(model_cache, tmp_path):
    release, entered = threading.Event(), threading.Event()

    def held(generate):
        def wrapped(*args):
            entered.set()
            assert release.wait(30)
            return generate(*args)

        return wrapped

    st = build(tmp_path, "serve.max_queue=1", generate_wrapper=held)
    try:
        first = threading.Thread(
            target=lambda: client(st).completions.create(model="rewardloop", prompt="a b")
        )
        first.start()
        assert entered.wait(30)
        with pytest.raises(openai.RateLimitError) as e:
            client(st).completions.create(model="rewardloop", prompt="a b")
        assert e.value.response.headers["Retry-After"] == "1"
        release.set()
        first.join(30)
        assert st.server.counts["rejected_queue_full"] == 1
    finally:
        release.set()
        st.stop()
