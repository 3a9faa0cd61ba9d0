"""Time one kernel on this machine or on a device behind TVM's RPC tracker.

The kernel is compiled for the tuning target, run on the given arguments (real-shaped and
valid: table indices are the layer's own), checked against the expected output, then timed
with ``time_evaluator`` (median of repeats).  Over RPC the library is exported (cross-linked
for the target's triple), uploaded, loaded and timed on the device; every wait is bounded.
"""

from __future__ import annotations

import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tvm


def parse_tracker(text: str) -> tuple[str, int]:
    """``HOST:PORT`` -> (host, port), or a ValueError saying what is wrong."""
    host, sep, port = str(text).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--rpc-tracker {text!r}: expected HOST:PORT, e.g. 127.0.0.1:9190")
    return host, int(port)


def _bounded(fn, timeout: float, what: str):
    """Run ``fn()`` in a thread and give up after ``timeout`` s (TVM's tracker client blocks
    without a timeout of its own while it waits for a free device)."""
    box: dict = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as err:  # re-raised in the caller's thread
            box["error"] = err

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise TimeoutError(f"{what} did not finish within {timeout:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def upload_module(session, lib, target, name: str, timeout: float, what: str):
    """Export ``lib`` (cross-linked for ``target`` where the device is another CPU), upload it
    to an RPC ``session`` as ``name`` and load it there; each step bounded by ``timeout``.
    ``what``: the library, for the error ("a kernel", "the probe")."""
    from ..export import compiler_for

    cc = compiler_for(target)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        if cc is None:
            lib.export_library(str(path))
        else:
            lib.export_library(str(path), fcompile=tvm.support.cc.cross_compiler(cc))
        _bounded(lambda: session.upload(str(path), target=name), timeout, f"uploading {what}")
    return _bounded(lambda: session.load_module(name), timeout,
                    f"loading {what} on the device")


def _servers(summary: dict, key: str) -> int:
    """How many servers the tracker's summary lists under ``key`` (busy ones included)."""
    return sum(1 for i in summary.get("server_info", []) if i.get("key") == f"server:{key}")


@dataclass
class LocalRunner:
    number: int = 20
    repeat: int = 5
    name: str = "local"

    def device(self):
        return tvm.cpu(), None

    def load(self, lib, target):
        return lib.mod

    def close(self) -> None:
        pass


@dataclass
class RPCRunner:
    """A device under ``key`` at the tracker ``host:port`` (one session for the whole run)."""

    host: str
    port: int
    key: str
    timeout: float = 60.0
    number: int = 20
    repeat: int = 5
    session = None
    uploads: int = 0

    @property
    def name(self) -> str:
        return f"rpc {self.key}@{self.host}:{self.port}"

    def connect(self):
        import socket

        from tvm import rpc

        where = f"RPC tracker {self.host}:{self.port}"
        try:  # TVM's client retries a refused connection for a minute: ask once first
            socket.create_connection((self.host, self.port), timeout=min(10, self.timeout)).close()
        except OSError as err:
            raise ValueError(f"cannot reach the {where}: {err}. Start one with python -m "
                             "tvm.exec.rpc_tracker --host HOST --port PORT") from None
        try:
            tracker = _bounded(lambda: rpc.connect_tracker(self.host, self.port), self.timeout,
                               f"connecting to {where}")
            summary = _bounded(tracker.summary, self.timeout, f"asking {where}")
        except (OSError, RuntimeError) as err:
            raise ValueError(f"cannot reach the {where}: {err}. Start one with python -m "
                             "tvm.exec.rpc_tracker --host HOST --port PORT") from None
        keys = sorted(summary.get("queue_info", {}))
        start = (f"start one with python -m tvm.exec.rpc_server --tracker "
                 f"{self.host}:{self.port} --key {self.key}")
        if self.key not in keys:
            raise ValueError(f"no RPC server is registered under key {self.key!r} at {where} "
                             f"(keys there: {keys or 'none'}); {start}")
        if not _servers(summary, self.key):  # the tracker keeps a key's queue after its last
            raise ValueError(f"no {self.key!r} server is left at {where}: the servers under "
                             f"the key stopped or died; {start}")  # server is gone
        try:
            self.session = _bounded(
                lambda: tracker.request(self.key, priority=1, session_timeout=0),
                self.timeout, f"waiting for a free {self.key!r} device at {where}")
        except TimeoutError as err:
            try:
                left = _servers(_bounded(rpc.connect_tracker(self.host, self.port).summary,
                                         10, f"asking {where}"), self.key)
            except (OSError, RuntimeError, TimeoutError):
                raise err from None
            if not left:
                raise ValueError(f"no {self.key!r} server is left at {where}: the servers "
                                 f"under the key stopped or died while waiting; {start}") from None
            raise TimeoutError(f"{err} ({left} server(s) under the key, all busy)") from None
        return self.session

    def device(self):
        if self.session is None:
            self.connect()
        return self.session.cpu(0), self.session

    def load(self, lib, target):
        # a new name per kernel: rewriting a library the device still has loaded crashes it
        self.uploads += 1
        return upload_module(self.session, lib, target, f"prom_tvm_kernel_{self.uploads}.so",
                             self.timeout, "a kernel")

    def close(self) -> None:
        """Release the device: TVM's sessions have no close(), they end when collected (and
        the tracker hands the device to the next request, e.g. meta-schedule's runner)."""
        import gc

        self.session = None
        gc.collect()


def measure(func, arrays: list[np.ndarray], out_shape, out_dtype: str, target, runner,
            expected: np.ndarray | None = None) -> float:
    """Seconds per call of PrimFunc ``func(*arrays, out)`` (median over repeats); raises
    ``AssertionError`` when the output differs from ``expected``."""
    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target)
    dev, _ = runner.device()
    mod = runner.load(lib, target)
    args = [tvm.runtime.tensor(np.ascontiguousarray(a), dev) for a in arrays]
    out = tvm.runtime.tensor(np.zeros(out_shape, out_dtype), dev)
    mod["main"](*args, out)
    if expected is not None and not np.array_equal(out.numpy(), expected):
        raise AssertionError("a candidate kernel's output differs from the reference")
    timer = mod.time_evaluator("main", dev, number=runner.number, repeat=runner.repeat)
    return float(np.median(timer(*args, out).results))
