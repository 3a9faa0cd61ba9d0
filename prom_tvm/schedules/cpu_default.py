"""CPU scheduling helpers shared by the int8 kernels, and a safe default schedule for any
other PrimFunc the Relax pipeline leaves unscheduled.

TVM 0.27's CPU pipeline schedules nothing, so a legalized PrimFunc runs as a scalar,
single-threaded loop nest. ``schedule_generic_cpu`` gives such a function the two things that
matter most and never change results: a parallel outer loop and a vectorized inner loop.
"""

from __future__ import annotations

from tvm import s_tir, tirx
from tvm.target import Target

__all__ = [
    "loop_extent",
    "schedule_generic_cpu",
    "vector_bits",
    "vector_lanes",
    "vectorize_loop",
]

# Parallel loops with fewer iterations than this are not worth a thread-pool launch.
_MIN_PARALLEL_EXTENT = 2
# Innermost loops up to this extent are vectorized whole; longer ones are split.
_MAX_WHOLE_VECTOR = 64


def as_target(target) -> Target:
    return target if isinstance(target, Target) else Target(target)


def vector_bits(target) -> int:
    """Width in bits of the integer SIMD registers code for ``target`` may use.

    512 with AVX-512BW, 256 with AVX2, else 128 (SSE, NEON and anything unknown).
    """
    t = as_target(target)
    if t.kind.name != "llvm":
        return 128
    from tvm.target.codegen import target_has_features

    try:
        if target_has_features("avx512bw", t):
            return 512
        if target_has_features("avx2", t):
            return 256
    except (RuntimeError, ValueError):
        pass
    return 128


def vector_lanes(target, dtype_bits: int = 32) -> int:
    """Lanes of one vector register of ``dtype_bits``-wide elements."""
    return max(1, vector_bits(target) // dtype_bits)


def loop_extent(sch: s_tir.Schedule, loop) -> int | None:
    """Constant extent of ``loop``, or None when it is symbolic."""
    ext = sch.get(loop).extent
    return int(ext) if isinstance(ext, tirx.IntImm) else None


def vectorize_loop(sch: s_tir.Schedule, loop, lanes: int, unroll_outer: bool = False) -> None:
    """Vectorize ``loop`` in chunks of ``lanes`` without predicates.

    A loop that is a multiple of ``lanes`` is split and its inner part vectorized; a loop
    that is not is partitioned into a divisible body and a short tail, each vectorized
    (a predicated split would stop vectorization). Partitioning renames the block, so call
    this last on a block.
    """
    ext = loop_extent(sch, loop)
    if ext is None or ext <= 1:
        return
    if ext <= lanes:
        sch.vectorize(loop)
        return
    body = ext // lanes * lanes
    if body != ext:
        main, tail = sch.loop_partition(loop, [body])
        sch.vectorize(tail)
        loop = main
    outer, inner = sch.split(loop, [None, lanes])
    sch.vectorize(inner)
    if unroll_outer:
        sch.unroll(outer)


def _root_children(sch: s_tir.Schedule) -> list:
    try:
        return list(sch.get_child_blocks(sch.get_sblock("root")))
    except (RuntimeError, ValueError):
        return []


def _inline_spatial(sch: s_tir.Schedule) -> None:
    """Inline every intermediate elementwise stage that TVM lets us inline."""
    for block in _root_children(sch):
        trial = sch.copy()
        try:
            trial.compute_inline(block)
        except (RuntimeError, ValueError):
            continue
        sch.compute_inline(block)


def _leading_spatial_loops(sch: s_tir.Schedule, block) -> list:
    """Outer loops that bind one data-parallel iterator each (an unscheduled loop nest)."""
    loops = sch.get_loops(block)
    iters = sch.get(block).iter_vars
    if len(loops) != len(iters):
        return []
    out = []
    for loop, it in zip(loops, iters, strict=True):
        ext = loop_extent(sch, loop)
        dom = it.dom.extent
        if (ext is None or it.iter_type != tirx.IterVar.DataPar
                or not isinstance(dom, tirx.IntImm) or int(dom) != ext):
            break
        out.append(loop)
    return out


def _schedule_block(sch: s_tir.Schedule, block, lanes: int) -> None:
    loops = sch.get_loops(block)
    spatial = _leading_spatial_loops(sch, block)
    if not spatial:
        return
    vec = spatial[-1] if len(spatial) == len(loops) else None
    par = spatial[:-1] if vec is not None else spatial
    if vec is not None:
        ext = loop_extent(sch, vec)
        if ext < lanes or ext % lanes:
            # Too short or ragged to vectorize cleanly: let it run in parallel instead.
            vec = None
            par = spatial
    if par:
        fused = sch.fuse(*par) if len(par) > 1 else par[0]
        if loop_extent(sch, fused) >= _MIN_PARALLEL_EXTENT:
            sch.parallel(fused)
    if vec is not None:
        ext = loop_extent(sch, vec)
        if ext <= _MAX_WHOLE_VECTOR:
            sch.vectorize(vec)
        else:
            _, inner = sch.split(vec, [None, lanes])
            sch.vectorize(inner)


def schedule_generic_cpu(sch: s_tir.Schedule, target) -> s_tir.Schedule:
    """Parallelize and vectorize an unscheduled PrimFunc; leave what it cannot handle alone.

    Intermediate elementwise stages are inlined; every remaining block gets its leading
    spatial loops fused and run in parallel, and its innermost loop vectorized when that
    loop is spatial and divides into whole vectors. Reduction loops stay serial. Each step is
    tried on a copy of the schedule first, so a block this cannot handle stays exactly as it
    came and the function is never broken.
    """
    lanes = vector_lanes(target, 32)
    _inline_spatial(sch)
    for block in _root_children(sch):
        trial = sch.copy()
        try:
            _schedule_block(trial, block, lanes)
        except Exception:  # any failure: leave this block as it came
            continue
        _schedule_block(sch, block, lanes)
    return sch
