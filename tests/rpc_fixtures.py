"""A TVM RPC tracker and servers on 127.0.0.1, started and always torn down by the test."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args: list[str]) -> subprocess.Popen:
    # own process group: the server forks workers, which must die with it
    return subprocess.Popen([sys.executable, "-m", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def wait_for_key(port: int, key: str, timeout: float = 60.0) -> None:
    from tvm import rpc

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if key in rpc.connect_tracker("127.0.0.1", port).summary().get("queue_info", {}):
                return
        except (OSError, RuntimeError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"no server registered under {key!r} within {timeout} s")


@contextlib.contextmanager
def tracker():
    """A tracker on 127.0.0.1; yields its port."""
    port = free_port()
    proc = _start(["tvm.exec.rpc_tracker", "--host", "127.0.0.1", "--port", str(port),
                   "--port-end", str(port + 1)])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            time.sleep(0.2)
        yield port
    finally:
        _stop(proc)


@contextlib.contextmanager
def server(tracker_port: int, key: str):
    """An RPC server for this machine's CPU registered under ``key``."""
    port = free_port()
    proc = _start(["tvm.exec.rpc_server", "--tracker", f"127.0.0.1:{tracker_port}", "--key", key,
                   "--host", "127.0.0.1", "--port", str(port), "--port-end", str(port + 1)])
    try:
        wait_for_key(tracker_port, key)
        yield proc
    finally:
        _stop(proc)
