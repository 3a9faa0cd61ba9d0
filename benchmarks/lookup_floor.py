"""What this CPU allows the add-only kernels at best: machine floors, measured, and the bound
they put on the deep (table-lookup) pointwise layers against onnxruntime int8.

Small inline-assembly loops (compiled with gcc, run here) time the instructions the kernels
are made of, in cycles (the clock is measured by a dependent ``vpaddw`` chain):

* ``lookup``: one table lookup of ``ternary_lut`` (a byte index load, then ``vpaddw`` of the
  indexed table row): 3 input channels x L pixels of add-only work;
* ``baked``: the same add with the row's address a constant (weight-specialized code);
* ``vpdpbusd``: the VNNI instruction onnxruntime's int8 kernels are built on (64 MACs);
* plain vector adds and loads, for reference.

Then, for every table-lookup layer of ``benchmarks/results/pointwise_layers.json`` (same
machine), the time the kernel would take if it ran at the ``lookup`` floor and did nothing
else, against onnxruntime int8's measured time; and the code bytes that baked lookups
(``baked``, 7 bytes an instruction) would add to the library.  Writes
``benchmarks/results/lookup_floor.json``.

    python benchmarks/lookup_floor.py
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
OUT = RESULTS / "lookup_floor.json"
BAKED_BYTES = 7  # vpaddw zmm, zmm, disp8*64(%reg): EVEX (4) + opcode + modrm + disp8
ROW = 1728  # bytes between table rows of consecutive groups (27 entries x 64 bytes)


def _loop(name: str, body: list[str], per: int = 8) -> str:
    """A C ``RUN`` line: ``body`` (``per`` measured operations) repeated N times."""
    asm = "\\n".join(body)
    return f'  RUN("{name}", {per}, "{asm}\\n");\n'


def _kernels(zmm: bool, vnni: bool) -> list[str]:
    r = "zmm" if zmm else "ymm"
    acc = [f"%%{r}{i}" for i in range(8)]  # eight independent accumulators
    mov = "vmovdqu64" if zmm else "vmovdqu"
    lookup = []
    for o, a in enumerate(acc):  # the table kernel's lookup: index byte, then its row
        lookup += [f"movzbl {o}(%%rdx),%%edi", f"vpaddw {o * ROW}(%%rsi,%%rdi,8),{a},{a}"]
    out = [_loop("vector add (register)", [f"vpaddw %%{r}8,{a},{a}" for a in acc]),
           _loop("vector load", [f"{mov} {o * ROW}(%%rsi),{a}" for o, a in enumerate(acc)]),
           _loop("baked: add of a constant-address row",
                 [f"vpaddw {o * ROW}(%%rsi),{a},{a}" for o, a in enumerate(acc)]),
           _loop("lookup: byte index + indexed row add", lookup)]
    if vnni and zmm:
        out.append(_loop("vpdpbusd (VNNI, 64 MACs)", [f"vpdpbusd %%zmm8,%%zmm9,{a}" for a in acc]))
    return out


C_HEAD = r"""
#include <stdio.h>
#include <time.h>
static double now(void) { struct timespec a; clock_gettime(CLOCK_MONOTONIC, &a);
                          return a.tv_sec + 1e-9 * a.tv_nsec; }
static char table[65536] __attribute__((aligned(64)));
static unsigned char idx[64] __attribute__((aligned(64)));  /* zero: row 0 of each group */
#define N 40000000L
#define CLOBBER "rdi", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", \
                "xmm8", "xmm9", "memory"
#define RUN(name, per, code) { long n = N; double t = now(); \
  __asm__ volatile("1:\n" code "dec %0\n jnz 1b" : "+r"(n) : "S"(table), "d"(idx) : CLOBBER); \
  printf("%s\t%.6e\n", name, (now() - t) / ((double)N * per)); }
int main(void) {
  { long n = N; double t = now();  /* clock: a dependent chain, one add a cycle */
    __asm__ volatile("1:\n vpaddw %%xmm0,%%xmm0,%%xmm0\n vpaddw %%xmm0,%%xmm0,%%xmm0\n"
                     " vpaddw %%xmm0,%%xmm0,%%xmm0\n vpaddw %%xmm0,%%xmm0,%%xmm0\n"
                     " dec %0\n jnz 1b" : "+r"(n) :: "xmm0");
    printf("clock\t%.6e\n", (now() - t) / ((double)N * 4)); }
"""


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def measure(zmm: bool, vnni: bool, repeats: int = 5) -> dict[str, float]:
    """Cycles per instruction of each loop (minimum over ``repeats`` runs)."""
    src = C_HEAD + "".join(_kernels(zmm, vnni)) + "  return 0;\n}\n"
    with tempfile.TemporaryDirectory() as d:
        exe = Path(d) / "floor"
        (Path(d) / "floor.c").write_text(src)
        subprocess.run(["gcc", "-O1", "-o", str(exe), str(Path(d) / "floor.c")], check=True)
        best: dict[str, float] = {}
        for _ in range(repeats):
            out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
            for line in out.splitlines():
                name, sec = line.split("\t")
                best[name] = min(best.get(name, float("inf")), float(sec))
    clock = best.pop("clock")
    return {"ghz": round(1e-9 / clock, 2),
            "cycles": {k: round(v / clock, 3) for k, v in best.items()}}


def layer_bounds(cycles: dict[str, float], ghz: float, lanes: int) -> dict:
    """Per table-lookup layer: lookups, their time at the lookup floor alone, onnxruntime's
    measured time, the ratio; and the code bytes of the same lookups baked."""
    path = RESULTS / "pointwise_layers.json"
    if not path.exists():
        return {"note": f"{path} missing: run benchmarks/pointwise_layers.py first"}
    runs = json.loads(path.read_text())["runs"]["1"]["layers"]
    c = cycles["lookup: byte index + indexed row add"]
    rows, floor_us, ort_us, baked = [], 0.0, 0.0, 0
    for lay in runs:
        if lay["form"]["prom_tvm"] != "table-lookup":
            continue
        n = lay["cout"] * -(-lay["cin"] // 3) * -(-lay["hw"] ** 2 // lanes)
        t = n * c / (ghz * 1e3) * lay["count"]
        o = lay["us"]["onnxruntime-int8"] * lay["count"]
        kb = lay["cout"] * -(-lay["cin"] // 3) * BAKED_BYTES * lay["count"] / 1024
        rows.append({"layer": lay["layer"], "count": lay["count"],
                     "lookups_per_image": n, "floor_us": round(t, 1),
                     "prom_tvm_us": round(lay["us"]["prom_tvm"] * lay["count"], 1),
                     "onnxruntime_int8_us": round(o, 1), "floor_ratio": round(t / o, 2),
                     "baked_code_kb": round(kb)})
        floor_us, ort_us, baked = floor_us + t, ort_us + o, baked + kb
    return {"layers": rows, "floor_us": round(floor_us, 1), "onnxruntime_int8_us": round(ort_us, 1),
            "floor_ratio": round(floor_us / ort_us, 2), "baked_code_mb": round(baked / 1024, 2)}


def main() -> dict:
    flags = cpu_flags()
    if platform.machine() not in ("x86_64", "AMD64") or "avx2" not in flags:
        sys.exit("lookup_floor: needs an x86-64 CPU with AVX2")
    zmm = "avx512bw" in flags
    vnni = "avx512_vnni" in flags
    m = measure(zmm, vnni)
    lanes = 32 if zmm else 16
    cyc = m["cycles"]
    look = cyc["lookup: byte index + indexed row add"]
    derived = {
        "lanes": lanes,
        "lookup_mac_equivalents_per_cycle": round(3 * lanes / look, 1),
        "baked_mac_equivalents_per_cycle": round(
            3 * lanes / cyc["baked: add of a constant-address row"], 1),
    }
    if "vpdpbusd (VNNI, 64 MACs)" in cyc:
        derived["vnni_macs_per_cycle"] = round(64 / cyc["vpdpbusd (VNNI, 64 MACs)"], 1)
    res = {"benchmark": "lookup_floor", "command": "python benchmarks/lookup_floor.py",
           "cpu_flags": {"avx512bw": zmm, "avx512_vnni": vnni}, **m, "derived": derived,
           "table_layers_at_floor": layer_bounds(cyc, m["ghz"], lanes)}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(res, indent=1) + "\n")
    print(f"clock {m['ghz']} GHz")
    for k, v in cyc.items():
        print(f"  {k:44s} {v:6.3f} cycles")
    for k, v in derived.items():
        print(f"  {k:44s} {v}")
    t = res["table_layers_at_floor"]
    if "floor_ratio" in t:
        print(f"table-lookup layers at the lookup floor: {t['floor_us']} us vs onnxruntime int8 "
              f"{t['onnxruntime_int8_us']} us ({t['floor_ratio']}x); baked lookups would add "
              f"{t['baked_code_mb']} MB of code")
    print(f"wrote {OUT}")
    return res


if __name__ == "__main__":
    main()
