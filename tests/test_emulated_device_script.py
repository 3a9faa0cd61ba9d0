"""scripts/emulated_device.sh without a device: its pins and its argument errors (fast; the
device itself is tests/test_emulated_a72.py, slow)."""

from __future__ import annotations

import re
import subprocess
from importlib.metadata import version
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "emulated_device.sh"


def _run(*args):
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=30, stdin=subprocess.DEVNULL)


def test_the_device_gets_the_hosts_tvm():
    """RPC needs the same TVM on both sides: the rootfs venv pins the host's versions (the
    others are not pinned by pyproject.toml, so a fresh host may differ there)."""
    pins = dict(re.findall(r"([A-Za-z0-9_.-]+)==([0-9A-Za-z.+]+)",
                           re.search(r"PINS=\(([^)]*)\)", SCRIPT.read_text()).group(1)))
    for dist in ("apache-tvm", "apache-tvm-ffi"):
        assert pins[dist] == version(dist), dist
    assert {"tornado", "psutil", "cloudpickle", "numpy"} <= set(pins)  # TVM's RPC server


def test_argument_errors_say_what_to_pass():
    r = _run("start", "--key", "a72")
    assert r.returncode == 1 and "start needs --tracker HOST:PORT and --key KEY" in r.stderr
    r = _run("start", "--bogus")
    assert r.returncode == 1 and "unknown argument --bogus" in r.stderr
    r = _run("frobnicate")
    assert r.returncode == 2 and "setup" in r.stderr and "start --tracker" in r.stderr
