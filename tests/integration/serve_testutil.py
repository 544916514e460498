"""A real `rewardloop serve` stack (API, log, learner; one in-process replica) for tests."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import torch

from rewardloop.config import load_config
from rewardloop.modeling import load_policy
from rewardloop.serving import stack

KEY = "test-key"


def serve_config(tmp_path, *overrides: str):
    return load_config(
        None,
        [
            "serve.port=0",
            f"serve.api_keys={KEY}",
            f"out={tmp_path}",
            "serve.max_tokens=12",
            *overrides,
        ],
    )


def build(tmp_path, *overrides: str, start_loop: bool = False, generate_wrapper=None):
    torch.set_num_threads(1)
    cfg = serve_config(tmp_path, *overrides)
    model, tokenizer, _ = load_policy(cfg)
    if generate_wrapper is None:
        return stack.build(cfg, model, tokenizer, tmp_path, start_loop=start_loop)
    from rewardloop.serving.engine import Engine

    engine = Engine(model, tokenizer)
    engine.load(0, None)
    replicas = (generate_wrapper(engine.generate), engine.load, engine.keep)
    st = stack.build(cfg, model, tokenizer, tmp_path, replicas=replicas, start_loop=start_loop)
    st.engine = engine
    return st


def client(st, key: str = KEY):
    import openai

    return openai.OpenAI(base_url=f"{st.server.url}/v1", api_key=key, timeout=30, max_retries=0)


def post(url: str, body: dict, key: str = KEY, timeout: float = 30.0) -> tuple[int, dict]:
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
