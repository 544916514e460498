"""Serving replicas as Ray actors: requests through the `openai` client reach them, a new
version reaches every replica through the object store, and the pool scales down and up."""

from __future__ import annotations

import pytest
import torch
from serve_testutil import client, serve_config

from rewardloop.cluster.serving import ReplicaPool
from rewardloop.modeling import load_policy
from rewardloop.serving import stack


def test_replicas_serve_new_versions_and_scale(model_cache, ray_local, tmp_path):
    pytest.importorskip("openai")
    torch.set_num_threads(1)
    cfg = serve_config(tmp_path, "serve.train_batch=4", "serve.canary_fraction=0")
    model, tokenizer, _ = load_policy(cfg)
    pool = ReplicaPool(cfg, 2)
    st = stack.build(cfg, model, tokenizer, tmp_path, replicas=(pool.generate, pool.publish,
                                                                pool.retain), start_loop=False)  # fmt: skip
    try:
        c = client(st)
        for i in range(4):
            r = c.completions.create(model="rewardloop", prompt="Monday noon feed for bob",
                                     user=f"u{i}")  # fmt: skip
            assert r.system_fingerprint == "v0"
            st.core.feedback(r.id, "like", f"u{i}")
        st.loop.tick()  # one step -> version 1, promoted at once (canary_fraction 0)
        assert st.router.stable == 1
        assert all(1 in s["versions"] for s in pool.stats())
        r = c.completions.create(model="rewardloop", prompt="Monday noon feed for bob", user="x")
        assert r.model == "rewardloop-v1"
        assert pool.scale(1) == 1
        assert c.completions.create(model="rewardloop", prompt="hi", n=2).system_fingerprint == "v1"
        assert pool.scale(2) == 2  # the new replica loaded v1 before taking traffic
        assert all(1 in s["versions"] for s in pool.stats())
        assert sum(s["rows"] for s in pool.stats()) >= 1
    finally:
        st.stop()
        pool.close()
