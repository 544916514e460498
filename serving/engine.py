"""The generator a serving replica wraps: versioned weights and micro-batched sampling.

Concurrent `generate` calls queue up; one thread takes the oldest and every queued call with
the same (version, temperature, max_tokens), up to `max_batch` rows, and samples them in one
batched pass of `rewardloop.sampling.sample_completions` (the sampler the rollout workers
use, so behavior log-probs mean the same thing here). Each version is its own model copy;
`keep(versions)` frees the others. Every wait is bounded: a call that is not answered within
its timeout raises `Unavailable`.
"""

from __future__ import annotations

import copy
import queue
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

import torch

from rewardloop.errors import InvalidInput, NotFound, Unavailable
from rewardloop.sampling import Sample, sample_completions

MIN_TEMPERATURE = 1e-3
"""`temperature: 0` asks for (near-)greedy decoding; it samples at this temperature instead,
so the logged behavior log-probs stay finite."""


@dataclass
class _Call:
    version: int
    prompt_ids: list[int]
    n: int
    max_tokens: int
    temperature: float
    future: Future

    @property
    def key(self) -> tuple:
        return (self.version, self.temperature, self.max_tokens)


class Engine:
    """Versioned copies of one model; `generate` is thread-safe and batches across callers."""

    def __init__(self, model: torch.nn.Module, tokenizer, seed: int = 0, max_batch: int = 32):
        self.base = model.eval()
        self.tokenizer = tokenizer
        self.eos_id, self.pad_id = tokenizer.eos_token_id, tokenizer.pad_token_id
        self.max_batch = max_batch
        self.models: dict[int, torch.nn.Module] = {}
        self._generator = torch.Generator().manual_seed(seed)
        self._queue: queue.Queue[_Call | None] = queue.Queue()
        self._lock = threading.Lock()
        self.batches = 0
        self.rows = 0
        self._thread = threading.Thread(target=self._loop, name="serve-engine", daemon=True)
        self._thread.start()

    # ---- versions ---------------------------------------------------------------------------

    def load(self, version: int, state: dict[str, torch.Tensor] | None) -> None:
        """Hold `version` (None = the base model's own weights)."""
        model = copy.deepcopy(self.base)
        if state is not None:
            from rewardloop.lora import load_weights

            load_weights(model, state)  # full weights, or a LoRA adapter onto the base
        with self._lock:
            self.models[version] = model.eval()

    def keep(self, versions) -> None:
        with self._lock:
            for v in [v for v in self.models if v not in set(versions)]:
                del self.models[v]

    def versions(self) -> list[int]:
        with self._lock:
            return sorted(self.models)

    # ---- generation -------------------------------------------------------------------------

    def generate(
        self,
        version: int,
        prompt_ids: list[int],
        n: int = 1,
        max_tokens: int = 16,
        temperature: float = 1.0,
        timeout_s: float = 30.0,
    ) -> list[Sample]:
        """`n` completions of one prompt by `version`; Unavailable if not done in `timeout_s`."""
        with self._lock:
            if version not in self.models:
                raise NotFound(f"model: version {version} is not loaded on this replica")
        if not prompt_ids:
            raise InvalidInput("prompt", "is empty after tokenization")
        call = _Call(
            version, list(prompt_ids), n, max_tokens, max(temperature, MIN_TEMPERATURE), Future()
        )
        self._queue.put(call)
        try:
            return call.future.result(timeout=timeout_s)
        except FutureTimeout:
            call.future.cancel()
            raise Unavailable(f"generation: not done within {timeout_s} s") from None

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, rest = [first], []
            rows = first.n
            while True:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)
                    break
                if more.key == first.key and rows + more.n <= self.max_batch:
                    batch.append(more)
                    rows += more.n
                else:
                    rest.append(more)
            for call in rest:  # back in line, in order, for the next pass
                self._queue.put(call)
            self._run([c for c in batch if c.future.set_running_or_notify_cancel()])

    def _run(self, batch: list[_Call]) -> None:
        if not batch:
            return
        first = batch[0]
        with self._lock:
            model = self.models.get(first.version)
        if model is None:
            for c in batch:
                c.future.set_exception(NotFound(f"model: version {first.version} unloaded"))
            return
        prompts = [c.prompt_ids for c in batch for _ in range(c.n)]
        try:
            samples = sample_completions(
                model,
                prompts,
                1,
                first.max_tokens,
                self.eos_id,
                self.pad_id,
                first.temperature,
                self._generator,
            )
        except Exception as exc:  # noqa: BLE001 - handed to every caller of the batch
            for c in batch:
                c.future.set_exception(exc)
            return
        self.batches += 1
        self.rows += len(prompts)
        start = 0
        for c in batch:
            c.future.set_result(samples[start : start + c.n])
            start += c.n

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5.0)
