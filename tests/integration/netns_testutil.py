"""Two "hosts" on one machine: network namespaces joined by a veth pair, and a cable to pull.

    with TwoHosts() as hosts:                  # namespaces rl<id>a / rl<id>b, 10.200.<n>.1 / .2
        proc = hosts.popen("a", [python, ...])  # runs inside namespace a
        hosts.cut()                             # both veth ends down: packets vanish silently
        hosts.restore()

Needs root and `ip netns`; `unavailable()` says why not (the tests skip with that reason).
Every name carries this process's id and a counter, so parallel tests do not collide, and
`__exit__` kills what it started and deletes both namespaces (which removes the veth pair).
"""

from __future__ import annotations

import itertools
import os
import subprocess
from pathlib import Path

_IDS = itertools.count()


def _ip(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    cmd = ["ip", "netns", "exec", ns, "ip", *args] if ns else ["ip", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=check)


def unavailable() -> str:
    """Why namespaces cannot be used here ("" when they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    name = f"rlprobe{os.getpid()}"
    try:
        probe = _ip("netns", "add", name, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"`ip netns add` cannot run: {exc}"
    if probe.returncode != 0:
        return f"`ip netns add` refused: {probe.stderr.strip()}"
    _ip("netns", "del", name, check=False)
    return ""


class TwoHosts:
    """Namespaces "a" and "b" with addresses `addr["a"]`, `addr["b"]` on one veth pair."""

    def __init__(self):
        n = next(_IDS)
        tag = f"{os.getpid() % 10000}{n}"
        self.ns = {"a": f"rl{tag}a", "b": f"rl{tag}b"}
        self.dev = {"a": f"rl{tag}va", "b": f"rl{tag}vb"}
        subnet = 1 + (os.getpid() + n) % 250
        self.addr = {"a": f"10.200.{subnet}.1", "b": f"10.200.{subnet}.2"}
        self._procs: list[subprocess.Popen] = []

    def __enter__(self) -> TwoHosts:
        try:
            for side in "ab":
                _ip("netns", "add", self.ns[side])
            _ip("link", "add", self.dev["a"], "type", "veth", "peer", "name", self.dev["b"])
            for side in "ab":
                _ip("link", "set", self.dev[side], "netns", self.ns[side])
                _ip("addr", "add", f"{self.addr[side]}/24", "dev", self.dev[side], ns=self.ns[side])
                _ip("link", "set", self.dev[side], "up", ns=self.ns[side])
                _ip("link", "set", "lo", "up", ns=self.ns[side])
        except BaseException:
            self.__exit__()
            raise
        return self

    def popen(self, side: str, cmd: list[str], log: Path, env: dict | None = None, **kw):
        """Start `cmd` inside namespace `side`, stdout to `log`, stderr to `log`.err."""
        with log.open("w") as out, log.with_suffix(".err").open("w") as err:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", self.ns[side], *cmd], stdout=out, stderr=err, env=env, **kw
            )
        self._procs.append(proc)
        return proc

    def cut(self) -> None:
        """Pull the cable: both ends down; in-flight packets and new ones are dropped."""
        for side in "ab":
            _ip("link", "set", self.dev[side], "down", ns=self.ns[side])

    def restore(self) -> None:
        for side in "ab":
            _ip("link", "set", self.dev[side], "up", ns=self.ns[side])

    def __exit__(self, *exc) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
        for side in "ab":
            _ip("netns", "del", self.ns[side], check=False)
