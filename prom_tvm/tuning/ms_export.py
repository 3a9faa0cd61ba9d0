"""Meta-schedule's builder export for a device without a compiler: a linked ``.so``.

meta-schedule's default export writes a ``.tar`` of object files that the RPC server links
when it loads it; a board (or the emulated A72) has no compiler, so every trial would fail
there.  :func:`f_export_for` gives ``LocalBuilder(f_export=...)`` a function that links a
shared library on this machine, with the target's cross-compiler where the target is not this
machine's architecture (``prom_tvm.export.compiler_for``).  It runs in the builder's worker
processes, so it is a module-level function (picklable) with the compiler bound by
``functools.partial``.
"""

from __future__ import annotations

import functools
import os
import tempfile


def export_shared(mod, cc: str | None = None) -> str:
    """Link ``mod`` into a ``.so`` in a fresh temporary folder (``cc``: a cross-compiler, or
    None for this machine's); the path, as meta-schedule's builder expects."""
    import tvm

    folder = tempfile.mkdtemp(prefix="prom_tvm_ms_")
    # a name of its own per artifact: the RPC runner uploads it under its base name
    path = os.path.join(folder, f"{os.path.basename(folder)}.so")
    if cc is None:
        mod.export_library(path)
    else:
        mod.export_library(path, fcompile=tvm.support.cc.cross_compiler(cc))
    return path


def f_export_for(target):
    """The ``f_export`` for meta-schedule's ``LocalBuilder`` building for ``target``."""
    from ..export import compiler_for

    return functools.partial(export_shared, cc=compiler_for(target))
