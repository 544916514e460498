"""Assemble one `rewardloop serve` process from its parts (plain Python; Ray stays in cluster/).

    log     = ResponseLog(serve.log_path)            durable responses + feedback
    router  = CanaryRouter(stable = first version)   the pre-trained policy, numbered after the
                                                     newest version in the log (restarts)
    learner = SingleResponseLearner(Trainer(copy of the model))
    core    = ServeCore(log, router, generate)       the request path
    loop    = LiveLoop(log, router, learner, publish, retain)
    server  = OpenAIServer(core, loop)               the HTTP API

`generate`, `publish` and `retain` are the replicas: a pool of Ray actors (cluster/serving.py),
or, given none, one in-process `Engine` (tests, `bench serve`). The admin token is made here
and written with the API's address to `<out>/serve_admin.json` (mode 0600): the operator
commands (`rewardloop versions | rollback | pin | forget`) read it there.
"""

from __future__ import annotations

import copy
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from rewardloop.auth import resolve_token
from rewardloop.learner.single_response import SingleResponseLearner
from rewardloop.learner.trainer import Trainer

from .canary import CanaryRouter
from .engine import Engine
from .loop import LiveLoop
from .openai_api import OpenAIServer
from .response_log import ResponseLog
from .service import ServeCore

ADMIN_FILE = "serve_admin.json"


@dataclass
class Stack:
    log: ResponseLog
    router: CanaryRouter
    learner: SingleResponseLearner
    core: ServeCore
    loop: LiveLoop
    server: OpenAIServer
    engine: Engine | None = None
    grpc: object | None = None

    def stop(self) -> None:
        if self.grpc is not None:
            self.grpc.stop()
        self.server.stop()
        self.loop.stop()
        if self.engine is not None:
            self.engine.close()
        self.log.close()


def log_path(cfg, out: Path) -> Path:
    path = Path(cfg.serve.log_path).expanduser()
    return path if path.is_absolute() else out / path


def api_keys(cfg) -> list[str]:
    return [
        resolve_token(k.strip(), "serve.api_keys")
        for k in cfg.serve.api_keys.split(",")
        if k.strip()
    ]


def build(cfg, model, tokenizer, out: str | Path, replicas=None, start_loop: bool = True,
          seed: int = 0) -> Stack:  # fmt: skip
    """Open the log, build the learner and the API, start them; `replicas` = (generate,
    publish, retain) or None for one in-process Engine."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    secret = resolve_token(cfg.serve.user_secret, "serve.user_secret")
    log = ResponseLog.from_config(log_path(cfg, out), cfg.feedback, secret=secret)
    s = cfg.serve
    first = log.max_version() + 1  # versions never repeat across restarts of the same log
    router = CanaryRouter(first, s.canary_fraction, s.canary_window, s.canary_alpha,
                          s.canary_margin, s.canary_timeout_s, s.canary_reference)  # fmt: skip
    trainer = Trainer(copy.deepcopy(model), cfg.learner, tokenizer.pad_token_id, temperature=1.0,
                      start_version=first)  # fmt: skip
    learner = SingleResponseLearner(
        trainer, s.max_version_lag, s.baseline_decay, s.scale_advantages
    )
    engine = None
    if replicas is None:
        engine = Engine(model, tokenizer, seed=seed)
        replicas = (engine.generate, engine.load, engine.keep)
    generate, publish, retain = replicas
    if first != 0 or engine is not None:  # the replicas start with the base weights as `first`
        publish(first, trainer.state_dict_cpu())
        retain([first])
    core = ServeCore(cfg, tokenizer, log, router, generate)
    loop = LiveLoop(log, router, learner, publish, retain, s.train_batch, s.max_train_ahead,
                    s.min_batch, out_dir=out)  # fmt: skip
    core.on_forget.append(loop.forget)
    admin = secrets.token_urlsafe(24)
    server = OpenAIServer(core, loop, api_keys(cfg), admin_token=admin).start()
    grpc = None
    if s.grpc_port >= 0:
        from .grpc_feedback import feedback_server

        keys = api_keys(cfg)
        grpc = feedback_server(core, s.host, s.grpc_port, keys[0] if keys else "")
        grpc.start()
    write_admin(out, server.url, admin, grpc.address if grpc else "")
    if start_loop:
        loop.start()
    return Stack(log, router, learner, core, loop, server, engine, grpc)


def write_admin(out: Path, url: str, token: str, grpc: str = "") -> Path:
    path = out / ADMIN_FILE
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"url": url, "token": token, "grpc": grpc, "pid": os.getpid()}, f)
    os.replace(tmp, path)
    return path
