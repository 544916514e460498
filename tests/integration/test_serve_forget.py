"""`rewardloop forget RUN_DIR USER` reaches the learner's buffer: the user's joined responses
waiting there are removed before any step, their log rows and feedback are deleted, their
later feedback is refused, and which versions trained on their data stays answerable."""

from __future__ import annotations

import json
import subprocess
import sys

from serve_testutil import build, client, post


def _serve_rated(st, user: str, n: int) -> list[str]:
    c, ids = client(st), []
    for _ in range(n):
        r = c.completions.create(model="rewardloop", prompt="Monday noon feed for alice", user=user)
        st.core.feedback(r.id, "like", user, f"k-{r.id}")
        ids.append(r.id)
    return ids


def test_forget_reaches_the_learners_buffer(model_cache, tmp_path):
    st = build(tmp_path, "serve.train_batch=4", "serve.canary_fraction=0")
    try:
        _serve_rated(st, "alice", 4)
        st.loop.tick()  # one step on alice's four: version 1 trained on her data
        assert st.learner.version == 1
        waiting = _serve_rated(st, "alice", 2) + _serve_rated(st, "bob", 1)
        st.loop.tick()  # three joined, fewer than a step: they wait in the buffer
        alice = st.log.user_key("alice")
        assert len(st.learner.buffer) == 3 and alice in st.learner.buffer.users()

        out = subprocess.run(
            [sys.executable, "-m", "rewardloop.cli", "forget", str(tmp_path), "alice"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        result = json.loads(out.stdout)
        assert result["buffered"] == 2 and result["responses"] == 6 and result["feedback"] == 6
        assert result["trained_on"] == {"1": 4}
        assert st.learner.buffer.users() == {st.log.user_key("bob")}
        assert st.log.response(waiting[0]) is None and st.log.response(waiting[2]) is not None
        r = client(st).completions.create(model="rewardloop", prompt="hi", user="alice")
        status, body = post(f"{st.server.url}/v1/feedback",
                            {"response_id": waiting[2], "value": 1, "user": "alice"})  # fmt: skip
        assert status == 400 and "forgotten" in body["error"]["message"]
        assert st.log.response(r.id) is None  # served, but never logged again
    finally:
        st.stop()
