"""Shared helpers of the benchmarks: machine info, timing, the result shape, and a raw TCP peer.

Every benchmark returns one dict built by `result()`: the machine it ran on, the command that
reproduces it, and a list of `comparison()`s. A comparison always holds both figures (ours and
the baseline, measured in the same run) and their ratio, plus the goal check where the issue
states one, so a reader never has to trust a number without its yardstick.

The raw TCP peer (`recv_frames`, `send_frames`, `serve_payload`, `fetch_payload`) is the lower
bound for our gRPC transports: the same bytes, length-prefixed, over a plain loopback socket.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable

import torch

_LEN = struct.Struct("!Q")  # 8-byte big-endian length prefix of every raw TCP frame
RECV_CHUNK = 1 << 20


# ---- machine and results ---------------------------------------------------------------


def machine_info() -> dict:
    """Where the figures came from: CPU, cores, torch threads, platform, versions, load."""
    cpu = platform.processor() or ""
    try:
        for line in open("/proc/cpuinfo"):  # noqa: SIM115 - tiny read
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import grpc

    info = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "grpcio": grpc.__version__,
        "cuda": torch.cuda.is_available(),
    }
    try:
        info["loadavg_1m"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    return info


def comparison(
    name: str,
    ours: tuple[str, float, str],
    baseline: tuple[str, float, str],
    ratio_min: float | None = None,
    ratio_max: float | None = None,
    note: str = "",
) -> dict:
    """Both figures, `ratio = ours / baseline`, and the goal check when a bound is given.

    `ours` and `baseline` are (what, value, unit). Express throughputs as rates (higher is
    better, goal `ratio_min`) and latencies as seconds (lower is better, goal `ratio_max`).
    """
    ratio = ours[1] / baseline[1] if baseline[1] else float("nan")
    out = {
        "name": name,
        "ours": {"what": ours[0], "value": _round(ours[1]), "unit": ours[2]},
        "baseline": {"what": baseline[0], "value": _round(baseline[1]), "unit": baseline[2]},
        "ratio": _round(ratio),
    }
    if ratio_min is not None or ratio_max is not None:
        met = ratio == ratio  # NaN never meets a goal
        goal: dict = {}
        if ratio_min is not None:
            goal["ratio_min"] = ratio_min
            met = met and ratio >= ratio_min
        if ratio_max is not None:
            goal["ratio_max"] = ratio_max
            met = met and ratio <= ratio_max
        goal["met"] = bool(met)
        out["goal"] = goal
    if note:
        out["note"] = note
    return out


def result(benchmark: str, argv: list[str], comparisons: list[dict], **details) -> dict:
    """The JSON object a benchmark prints."""
    goals = [c["goal"]["met"] for c in comparisons if "goal" in c]
    return {
        "benchmark": benchmark,
        "command": " ".join(
            ["rewardloop bench", benchmark, "--json", *(a for a in argv if a != "--json")]
        ),
        "machine": machine_info(),
        "comparisons": comparisons,
        "goals_met": all(goals) if goals else None,
        **details,
    }


def emit(data: dict, as_json: bool) -> None:
    """--json: one JSON object and nothing else on stdout; otherwise the same, indented.

    Strict JSON: a NaN anywhere (an unmeasurable figure) is written as null."""
    print(
        json.dumps(_finite(data), indent=None if as_json else 2, default=_jsonable, allow_nan=False)
    )


def _finite(x):
    if isinstance(x, float) and (x != x or x in (float("inf"), float("-inf"))):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    return x


def log(*args) -> None:
    """Progress lines go to stderr so stdout stays one JSON object."""
    print(*args, file=sys.stderr, flush=True)


def parser(name: str, doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"rewardloop bench {name}", description=doc)
    p.add_argument("--json", action="store_true", help="print only the JSON result on stdout")
    p.add_argument("--repeats", type=int, default=3, help="runs per figure; medians are reported")
    return p


def _round(x: float) -> float | None:
    """4 significant digits; NaN/inf (a figure that could not be measured) become null."""
    if x != x or x in (float("inf"), float("-inf")):
        return None
    return float(f"{x:.4g}")


def _jsonable(x):
    return str(x)


# ---- timing ----------------------------------------------------------------------------


def median(values: Iterable[float]) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


def spread(values: Iterable[float]) -> dict:
    """min / median / max of repeated measurements (the noise, stated)."""
    values = sorted(values)
    if not values:
        return {}
    return {
        "min": _round(values[0]),
        "median": _round(median(values)),
        "max": _round(values[-1]),
        "n": len(values),
    }


def time_call(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# ---- the raw TCP peer ------------------------------------------------------------------


def listen() -> socket.socket:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    return srv


def _recv_exact(sock: socket.socket, buf: memoryview) -> None:
    got = 0
    while got < len(buf):
        n = sock.recv_into(buf[got:], min(RECV_CHUNK, len(buf) - got))
        if n == 0:
            raise ConnectionError("raw tcp: peer closed mid-frame")
        got += n


def recv_frame(sock: socket.socket) -> bytearray:
    head = bytearray(_LEN.size)
    _recv_exact(sock, memoryview(head))
    (n,) = _LEN.unpack(head)
    body = bytearray(n)
    if n:
        _recv_exact(sock, memoryview(body))
    return body


def send_frame(sock: socket.socket, data: bytes | bytearray | memoryview) -> None:
    sock.sendall(_LEN.pack(len(data)))
    if len(data):
        sock.sendall(data)


class FrameSink:
    """Accepts connections and reads length-prefixed frames until an empty one, then acks 1 byte.

    `on_frame` (optional) is called with each frame, e.g. to parse it as protobuf.
    """

    def __init__(
        self, on_frame: Callable[[bytearray], None] | None = None, timeout_s: float = 120.0
    ):
        self._srv = listen()
        self._srv.settimeout(timeout_s)
        self._on_frame = on_frame
        self.port = self._srv.getsockname()[1]
        self.frames = 0
        self.bytes = 0
        self._thread = threading.Thread(target=self._serve, daemon=True, name="raw-tcp-sink")
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._srv.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(self._srv.gettimeout())
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                while True:
                    frame = recv_frame(conn)
                    if not frame:
                        conn.sendall(b"\x01")
                        break
                    self.frames += 1
                    self.bytes += len(frame)
                    if self._on_frame is not None:
                        self._on_frame(frame)

    def close(self) -> None:
        self._srv.close()


def send_frames(port: int, frames: list[bytes], timeout_s: float = 120.0) -> float:
    """Send frames then an empty one, wait for the sink's ack; returns seconds."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t0 = time.perf_counter()
        for frame in frames:
            send_frame(sock, frame)
        send_frame(sock, b"")
        if sock.recv(1) != b"\x01":
            raise ConnectionError("raw tcp: no ack")
        return time.perf_counter() - t0


class PayloadServer:
    """Serves one payload to every connection that asks (1 request byte -> length + payload)."""

    def __init__(self, payload: bytes, timeout_s: float = 120.0):
        self.payload = memoryview(payload)
        self._srv = listen()
        self._srv.settimeout(timeout_s)
        self.port = self._srv.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True, name="raw-tcp-payload")
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._srv.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            if conn.recv(1) == b"\x01":
                send_frame(conn, self.payload)

    def close(self) -> None:
        self._srv.close()


def fetch_payload(port: int, timeout_s: float = 120.0) -> bytearray:
    """Ask a PayloadServer for its payload; returns it (received into one preallocated buffer)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(b"\x01")
        return recv_frame(sock)


# ---- worker processes ------------------------------------------------------------------


def _worker_loop(conn) -> None:
    """Body of a `Workers` process: run (function, args) messages until None."""
    import traceback

    sys.stdout = sys.stderr  # the parent's stdout carries only its JSON
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        fn, args = msg
        try:
            conn.send(("ok", fn(*args)))
        except BaseException as exc:  # report, keep serving
            conn.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))


class Workers:
    """N long-lived spawned processes, each running module-level functions sent to it.

    Unlike a process pool, call i always runs on process i, so N concurrent calls are N
    processes at once (the shape of N rollout workers).
    """

    def __init__(self, n: int, timeout_s: float = 300.0):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.timeout_s = timeout_s
        self._conns, self._procs = [], []
        for i in range(n):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker_loop, args=(child,), daemon=True, name=f"bench-w{i}")
            proc.start()
            self._conns.append(parent)
            self._procs.append(proc)

    def __len__(self) -> int:
        return len(self._conns)

    def submit(self, i: int, fn: Callable, *args) -> None:
        self._conns[i].send((fn, args))

    def result(self, i: int):
        conn = self._conns[i]
        if not conn.poll(self.timeout_s):
            raise TimeoutError(f"bench worker {i}: no answer within {self.timeout_s}s")
        status, value = conn.recv()
        if status != "ok":
            raise RuntimeError(f"bench worker {i} failed: {value}")
        return value

    def call(self, i: int, fn: Callable, *args):
        self.submit(i, fn, *args)
        return self.result(i)

    def map(self, k: int, fn: Callable, args_per_worker: list[tuple]) -> list:
        """Run fn on workers 0..k-1 at once; returns their results in order."""
        for i in range(k):
            self.submit(i, fn, *args_per_worker[i])
        return [self.result(i) for i in range(k)]

    def close(self) -> None:
        for conn in self._conns:
            try:
                conn.send(None)
            except OSError:
                pass
        for proc in self._procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
