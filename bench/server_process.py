"""Servers under benchmark as subprocesses: free loopback ports, readiness waits, CPU accounting, stop."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

READY_TIMEOUT = 180.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen, ok: Callable[[bytes], bool], log: Path,
               timeout: float = READY_TIMEOUT) -> None:
    """Poll ``url`` until it answers 200 with a body ``ok`` accepts; fail early if ``proc`` exits."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code == 200 and ok(response.content):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"not ready after {timeout:.0f}s: {url}\n{log.read_text()[-3000:]}")


class Server:
    """A subprocess server with its ports; ``stop()`` sends SIGTERM and waits.

    It runs in its own session so that ``stop()`` also ends the worker processes some servers
    (BentoML, MLServer) fork, even if the parent dies before reaping them.
    """

    def __init__(self, argv: list[str], log: Path, grpc_port: int | None, rest_port: int,
                 env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.log = log
        self.grpc_port = grpc_port
        self.rest_port = rest_port
        self.proc = subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                     start_new_session=True)

    def ready(self, urls: list[str], ok: Callable[[bytes], bool] = lambda body: True) -> Server:
        """Wait until every URL answers 200 with a body ``ok`` accepts; stop the server (and
        re-raise) if one never does. Returns the server."""
        try:
            for url in urls:
                wait_ready(url, self.proc, ok, self.log)
        except BaseException:
            self.stop()
            raise
        return self

    def cpu_seconds(self) -> float:
        """CPU seconds of the server process and its live descendants (worker processes)."""
        return sum(process_cpu_seconds(pid) for pid in process_tree(self.proc.pid))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):  # workers its parent left behind
            os.killpg(self.proc.pid, signal.SIGKILL)


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux /proc children lists)."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            pass
    return out


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and all its threads (Linux /proc); 0 if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
