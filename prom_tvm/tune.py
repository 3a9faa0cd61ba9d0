"""``python -m prom_tvm.tune model.onnx --target T --trials N --log-dir DIR``: tune a model.

Measures the knobs of every add-only kernel the model compiles to (``prom_tvm.tuning``), on
this machine or on a device behind TVM's RPC tracker (``--rpc-tracker HOST:PORT --rpc-key K``;
the library is cross-linked for the target and uploaded), and writes
``DIR/prom_tvm_kernels.json``, which ``prom_tvm.build(..., tuning_log=DIR)`` and
``python -m prom_tvm build --tuning-log DIR`` apply.  Ctrl-C keeps what was measured;
``--resume`` continues a log.  (No public function is named ``tune``, so that this module
never shadows one: the library function is ``prom_tvm.tuning.tuner.tune_model``.)
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m prom_tvm tune", description=__doc__.split("\n")[0])
    ap.add_argument("model", help="QDQ ONNX model")
    ap.add_argument("--target", default=None, help='TVM target (default: this CPU), e.g. '
                    '"llvm -mcpu=cortex-a72"')
    ap.add_argument("--trials", type=int, default=8,
                    help="candidates measured per kernel workload, the default first (8)")
    ap.add_argument("--ms-trials", type=int, default=32,
                    help="meta-schedule trials (evolutionary search, XGBoost cost model) per "
                    "int8 conv / dense workload; 0 skips them (32)")
    ap.add_argument("--log-dir", required=True, help="where prom_tvm_kernels.json goes")
    ap.add_argument("--rpc-tracker", default=None, metavar="HOST:PORT",
                    help="measure on a device registered with this TVM RPC tracker")
    ap.add_argument("--rpc-key", default=None, help="the device key at the tracker")
    ap.add_argument("--timeout", type=float, default=60.0,
                    help="seconds any RPC step may take before the run stops (60)")
    ap.add_argument("--resume", action="store_true", help="continue an existing log")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    if args.trials < 1 or args.ms_trials < 0:
        ap.error("--trials must be >= 1 and --ms-trials >= 0")
    if (args.rpc_tracker is None) != (args.rpc_key is None):
        ap.error("--rpc-tracker and --rpc-key go together")

    from .tuning.measure import LocalRunner, RPCRunner, parse_tracker
    from .tuning.tuner import tune_model

    try:
        runner = LocalRunner()
        if args.rpc_tracker:
            host, port = parse_tracker(args.rpc_tracker)
            runner = RPCRunner(host, port, args.rpc_key, timeout=args.timeout)
            runner.connect()
        result = tune_model(args.model, args.target, args.log_dir, args.trials, runner,
                            resume=args.resume, progress=not args.quiet,
                            ms_trials=args.ms_trials)
    except (ValueError, TimeoutError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for key, (knobs, us, default_us) in result.best.items():
        print(f"{key:52s} {default_us:9.1f} -> {us:9.1f} us  {knobs}")
    tot_d = sum(d for _, _, d in result.best.values())
    tot = sum(u for _, u, _ in result.best.values())
    if tot:
        print(f"{len(result.best)} workloads: default {tot_d:.1f} us -> tuned {tot:.1f} us "
              f"({tot / tot_d:.2f}x), {result.measured} new measurements")
    for key, r in result.ms.items():
        tuned = "failed" if r["tuned_us"] is None else f"{r['tuned_us']:9.1f} us"
        print(f"{'int8 ' + r['name']:52s} {r['default_us']:9.1f} -> {tuned}  "
              f"{'used' if r['use'] else 'kept the hand-written schedule'}")
    print(f"{'interrupted; ' if result.interrupted else ''}wrote {result.log_path}")
    return 130 if result.interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
