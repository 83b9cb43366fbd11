"""The real CUDA compiler without a GPU: PTX from numba-cuda (NVVM), SASS resources from ptxas.

Every CUDA module of the package (:data:`CUDA_MODULES`, plus any ``mcdose.transport.cuda*``
module) exposes ``kernel_specs() -> list[KernelSpec]``: each kernel's Python function, the
argument types the driver launches it with and its threads per block.  From these this
module

* compiles PTX for a chosen compute capability with numba-cuda's real compiler
  (:func:`compile_kernel_ptx`; numba-cuda[cu13] provides NVVM), pretending that the
  current device has that capability (:func:`pretend_device`), so no GPU is needed;
* assembles the PTX with ``ptxas -v`` (:func:`assemble`; ``nvidia-cuda-nvcc`` provides it)
  and reads registers per thread, stack frame and spill bytes;
* computes the theoretical occupancy at the launch configuration (:func:`occupancy`) and
  counts f64 and f32 PTX instructions (:func:`fp_instruction_counts`).

Install the compilers with the ``ptx`` extra (``pip install -e ".[ptx]"``).  Nothing here
imports ``numba.cuda`` at module import; a CPU-only install imports this module fine.

For kernel authors
------------------
* List every kernel: ``def kernel_specs(): return [spec_for(kernel, signature,
  threads_per_block), ...]`` in a module named ``mcdose.transport.cuda*`` (or add it to
  :data:`CUDA_MODULES`).  ``signature``: the numba types the driver passes (device arrays
  are writable and C-contiguous); ``threads_per_block``: the driver's block size (the
  occupancy is computed for it).
* Put code-changing options on the decorator (``fastmath=True``, ``max_registers=N``,
  ``launch_bounds=(T, min_blocks)``): :func:`spec_for` copies them, so the checks compile
  what the driver runs (``max_registers`` reaches ptxas as ``-maxrregcount``; its floor is
  24 on sm_90).
* No recompilation per process: ``@cuda.jit(cache=True)``, lazily (no signature: an eager
  one compiles at import and needs a GPU), decorated between
  ``_cache = physics_keyed_cache(); _cache.__enter__()`` and
  ``_cache.__exit__(None, None, None)`` (:mod:`mcdose._jit_cache`; numba invalidates a
  cache only when the kernel's own file changes, the folder is keyed by all physics
  sources).  numba-cuda ≥ 0.30 stores the PTX and the cubin for the GPU's compute
  capability, so a cached process runs neither NVVM nor ptxas.  A cached kernel must not
  capture global device arrays nor ``link=`` external files.  Device functions
  (``register_jitable`` / ``cuda.jit(device=True)``) need no flag: they are compiled into
  each kernel.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import pkgutil
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType, SimpleNamespace
from typing import Any

#: modules whose ``kernel_specs()`` list the package's CUDA kernels (extend for new ones;
#: any module ``mcdose.transport.cuda*`` is found as well, see :func:`cuda_modules`)
CUDA_MODULES: tuple[str, ...] = ("mcdose.transport.cuda",)
#: compute capabilities checked: Ampere (A100) and Hopper (H100/H200)
ARCHES: tuple[tuple[int, int], ...] = ((8, 0), (9, 0))
#: decorator options of ``@cuda.jit`` that change the generated code; passed on to
#: ``compile_ptx`` (``max_registers`` goes to ptxas as ``-maxrregcount``)
_PTX_OPTIONS = ("fastmath", "opt", "lineinfo", "debug", "launch_bounds", "forceinline")


@dataclass(frozen=True)
class KernelSpec:
    """One CUDA kernel as the driver launches it.

    Attributes
    ----------
    name : str
        Kernel name (the Python function's name).
    py_func : callable
        The Python function under ``@cuda.jit`` (``dispatcher.py_func``).
    signature : tuple
        numba argument types, as the driver passes them.
    threads_per_block : int
        Threads per block of the driver's launch configuration.
    module : str
        Defining module (``"mcdose.transport.cuda"``).
    options : mapping
        ``@cuda.jit`` options that change the code (``fastmath``, ``opt``,
        ``launch_bounds``, ``max_registers`` ...); :func:`spec_for` copies them from the
        dispatcher so the static check compiles what the driver compiles.
    """

    name: str
    py_func: Callable[..., Any]
    signature: tuple
    threads_per_block: int
    module: str
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


def spec_for(kernel: Any, signature: tuple, threads_per_block: int) -> KernelSpec:
    """A :class:`KernelSpec` from a ``@cuda.jit`` dispatcher (or the simulator's kernel).

    Parameters
    ----------
    kernel : CUDADispatcher or FakeCUDAKernel
        The decorated kernel.
    signature : tuple of numba types
        Argument types the driver launches it with.
    threads_per_block : int
        The driver's block size for this kernel.
    """
    py_func = getattr(kernel, "py_func", None) or kernel.fn  # the simulator keeps .fn
    target = dict(getattr(kernel, "targetoptions", {}) or {})
    options = {k: target[k] for k in (*_PTX_OPTIONS, "max_registers") if target.get(k)}
    if "opt" in target and not target["opt"]:
        options["opt"] = False
    return KernelSpec(
        name=py_func.__name__,
        py_func=py_func,
        signature=tuple(signature),
        threads_per_block=int(threads_per_block),
        module=py_func.__module__,
        options=MappingProxyType(options),
    )


# --------------------------------------------------------------------------------------
# Discovery
# --------------------------------------------------------------------------------------


def cuda_modules() -> tuple[str, ...]:
    """:data:`CUDA_MODULES` plus every ``mcdose.transport.cuda*`` module, in order."""
    import mcdose.transport as transport

    found = [
        f"{transport.__name__}.{m.name}"
        for m in pkgutil.iter_modules(transport.__path__)
        if m.name.startswith("cuda")
    ]
    return tuple(dict.fromkeys((*CUDA_MODULES, *sorted(found))))


def kernel_specs(modules: tuple[str, ...] | None = None) -> list[KernelSpec]:
    """Every kernel of every CUDA module (imports ``numba.cuda`` through those modules).

    Raises
    ------
    AttributeError
        A CUDA module without ``kernel_specs()`` (every one must list its kernels).
    """
    specs: list[KernelSpec] = []
    for name in modules or cuda_modules():
        module = importlib.import_module(name)
        if not hasattr(module, "kernel_specs"):
            raise AttributeError(f"{name} has no kernel_specs(): list its CUDA kernels there")
        specs += list(module.kernel_specs())
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"kernel names must be unique across CUDA modules: {dupes}")
    return specs


# --------------------------------------------------------------------------------------
# Compilers
# --------------------------------------------------------------------------------------


def nvvm_available() -> bool:
    """NVVM and NVRTC (numba-cuda's compilers, from ``numba-cuda[cu13]``) can be loaded."""
    try:
        from cuda.pathfinder import load_nvidia_dynamic_lib

        load_nvidia_dynamic_lib("nvvm")
        load_nvidia_dynamic_lib("nvrtc")
        return True
    except Exception:
        return False


def find_ptxas() -> Path | None:
    """``ptxas``: from the ``nvidia-cuda-nvcc`` wheel's bin folder, else ``$CUDA_HOME`` or PATH."""
    with contextlib.suppress(Exception):
        from cuda.pathfinder import find_nvidia_binary_utility

        found = find_nvidia_binary_utility("ptxas")
        if found:
            return Path(found)
    with contextlib.suppress(Exception):  # the wheel's layout, should pathfinder not know it
        import nvidia

        for root in map(Path, nvidia.__path__):
            for candidate in sorted(root.glob("cu*/bin/ptxas")) + sorted(
                root.glob("cuda_nvcc/bin/ptxas")
            ):
                return candidate
    exe = shutil.which("ptxas")
    return Path(exe) if exe else None


@contextlib.contextmanager
def pretend_device(cc: tuple[int, int]) -> Iterator[None]:
    """Within the block, numba-cuda's "current device" reports compute capability ``cc``.

    Device functions compiled while a kernel is compiled ask the current device for its
    compute capability; without a GPU there is none.  Only the dispatcher's and compiler's
    references are replaced, and restored on exit.
    """
    import numba.cuda.compiler as compiler
    import numba.cuda.dispatcher as dispatcher

    fake = SimpleNamespace(compute_capability=tuple(cc))
    saved = [(m, m.get_current_device) for m in (dispatcher, compiler)]
    try:
        for m, _ in saved:
            m.get_current_device = lambda: fake
        yield
    finally:
        for m, original in saved:
            m.get_current_device = original


@dataclass(frozen=True)
class CompiledPtx:
    """PTX of one kernel for one architecture."""

    kernel: str
    cc: tuple[int, int]
    ptx: str
    seconds: float

    @property
    def arch(self) -> str:
        return f"sm_{self.cc[0]}{self.cc[1]}"


def compile_kernel_ptx(spec: KernelSpec, cc: tuple[int, int]) -> CompiledPtx:
    """Compile ``spec`` to PTX for compute capability ``cc`` (wall time in ``seconds``)."""
    import numba.cuda as nbcuda

    kw = {k: v for k, v in spec.options.items() if k in _PTX_OPTIONS}
    t0 = time.perf_counter()
    with pretend_device(cc):
        ptx, _ = nbcuda.compile_ptx(spec.py_func, spec.signature, cc=tuple(cc), **kw)
    return CompiledPtx(spec.name, tuple(cc), ptx, time.perf_counter() - t0)


@dataclass(frozen=True)
class Resources:
    """What ``ptxas -v`` reports for a kernel's entry function.

    Attributes
    ----------
    registers : int
        Registers per thread.
    stack_frame_bytes : int
        Local-memory stack frame per thread, bytes.
    spill_store_bytes, spill_load_bytes : int
        Register spills to local memory, bytes.
    shared_bytes : int
        Static shared memory per block, bytes.
    seconds : float
        ptxas wall time.
    log : str
        ptxas's ``-v`` output.
    """

    registers: int
    stack_frame_bytes: int
    spill_store_bytes: int
    spill_load_bytes: int
    shared_bytes: int
    seconds: float
    log: str


class PtxasError(RuntimeError):
    """ptxas is missing or rejected the PTX."""


_ENTRY = re.compile(r"Compiling entry function '([^']+)' for '(sm_\w+)'")
_PROPS = re.compile(
    r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads"
)
_FUNC_PROPS = re.compile(r"Function properties for (\S+)")
_USED = re.compile(r"Used (\d+) registers")
_SMEM = re.compile(r"(\d+) bytes smem")


def parse_ptxas_log(log: str) -> dict[str, dict[str, int]]:
    """Resources of each entry function in a ``ptxas -v`` log, keyed by mangled name.

    Non-entry functions (``Function properties for __internal_…``) are not reported; their
    stack is part of the entry's "cumulative stack size", not of its frame.
    """
    out: dict[str, dict[str, int]] = {}
    current: str | None = None  # the entry function being compiled
    owner: str | None = None  # the function the next "bytes stack frame" line describes
    for line in log.splitlines():
        m = _ENTRY.search(line)
        if m:
            current = m.group(1)
            out[current] = {"registers": 0, "stack_frame_bytes": 0, "spill_store_bytes": 0,
                            "spill_load_bytes": 0, "shared_bytes": 0}  # fmt: skip
            continue
        m = _FUNC_PROPS.search(line)
        if m:
            owner = m.group(1)
            continue
        m = _PROPS.search(line)
        if m:
            if owner in out:
                rec = out[owner]
                rec["stack_frame_bytes"] = int(m.group(1))
                rec["spill_store_bytes"] = int(m.group(2))
                rec["spill_load_bytes"] = int(m.group(3))
            owner = None
            continue
        m = _USED.search(line)
        if m and current is not None:
            out[current]["registers"] = int(m.group(1))
            s = _SMEM.search(line)
            if s:
                out[current]["shared_bytes"] = int(s.group(1))
            current = None
    return out


def assemble(ptx: str, cc: tuple[int, int], *, max_registers: int | None = None,
             ptxas: Path | None = None, timeout: float = 600) -> Resources:  # fmt: skip
    """Assemble ``ptx`` with ``ptxas -arch=sm_XY -v``; the single entry function's resources.

    Raises
    ------
    PtxasError
        ptxas not found, failed, or the PTX holds other than one entry function.
    """
    exe = ptxas or find_ptxas()
    if exe is None:
        raise PtxasError("ptxas not found (pip install nvidia-cuda-nvcc, or the 'ptx' extra)")
    arch = f"sm_{cc[0]}{cc[1]}"
    with tempfile.TemporaryDirectory(prefix="mcdose-ptxas-") as tmp:
        src = Path(tmp) / "kernel.ptx"
        src.write_text(ptx)
        cmd = [str(exe), f"-arch={arch}", "-v", "-o", str(Path(tmp) / "kernel.cubin"), str(src)]
        if max_registers:
            cmd[1:1] = [f"-maxrregcount={int(max_registers)}"]
        t0 = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        seconds = time.perf_counter() - t0
    log = (res.stdout or "") + (res.stderr or "")
    if res.returncode != 0:
        raise PtxasError(f"ptxas {arch} failed (exit {res.returncode}): {log.strip()[-2000:]}")
    entries = parse_ptxas_log(log)
    if len(entries) != 1:
        raise PtxasError(f"ptxas {arch}: expected one entry function, found {len(entries)}")
    (rec,) = entries.values()
    return Resources(seconds=seconds, log=log, **rec)


# --------------------------------------------------------------------------------------
# Occupancy and instruction mix
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmLimits:
    """Per-SM limits of a compute capability (CUDA C Programming Guide, Table
    "Technical Specifications per Compute Capability"; CUDA Occupancy Calculator)."""

    registers_per_sm: int = 65536
    register_alloc_unit: int = 256  # registers, allocated per warp
    max_registers_per_thread: int = 255
    max_threads_per_sm: int = 2048
    max_blocks_per_sm: int = 32
    shared_per_sm: int = 233472  # bytes usable by blocks (228 KiB on sm_90)
    shared_alloc_unit: int = 128  # bytes
    shared_reserved_per_block: int = 1024  # bytes the system reserves per block (sm_80+)
    warp_size: int = 32


SM_LIMITS: dict[tuple[int, int], SmLimits] = {
    (8, 0): SmLimits(shared_per_sm=167936),  # A100: 164 KiB
    (9, 0): SmLimits(),  # H100/H200: 228 KiB
}

OCCUPANCY_FORMULA = (
    "warps/block W = ceil(T/32); regs/warp = ceil(R*32/256)*256; "
    "blocks limited by registers = floor(floor(65536/(regs/warp))/W); "
    "by threads = floor(2048/T); by blocks = 32; "
    "by shared memory = floor(smem/SM / ceil(S + 1024, 128)) (S = static shared bytes/block); "
    "occupancy = min(limits)*W / 64 warps"
)


def occupancy(registers: int, threads_per_block: int, shared_bytes: int = 0,
              cc: tuple[int, int] = (9, 0)) -> dict[str, Any]:  # fmt: skip
    """Theoretical occupancy of a kernel on one SM.

    Parameters
    ----------
    registers : int
        Registers per thread (ptxas).
    threads_per_block : int
        Launch configuration's block size T.
    shared_bytes : int
        Static + dynamic shared memory per block S, bytes.
    cc : (int, int)
        Compute capability (limits from :data:`SM_LIMITS`).

    Returns
    -------
    dict
        ``blocks_limit`` per limiting resource, ``blocks_per_sm``, ``active_warps``,
        ``max_warps``, ``occupancy`` (fraction of the SM's warp slots), ``limited_by`` and
        the ``formula`` (:data:`OCCUPANCY_FORMULA`).
    """
    lim = SM_LIMITS.get(tuple(cc), SmLimits())
    t = int(threads_per_block)
    if t < 1 or registers < 0:
        raise ValueError("threads_per_block must be ≥ 1 and registers ≥ 0")
    warps_per_block = math.ceil(t / lim.warp_size)
    max_warps = lim.max_threads_per_sm // lim.warp_size
    regs_per_warp = (
        math.ceil(max(registers, 1) * lim.warp_size / lim.register_alloc_unit)
        * lim.register_alloc_unit
    )
    by_regs = (
        0 if registers > lim.max_registers_per_thread
        else (lim.registers_per_sm // regs_per_warp) // warps_per_block
    )  # fmt: skip
    smem = math.ceil((shared_bytes + lim.shared_reserved_per_block) / lim.shared_alloc_unit)
    smem *= lim.shared_alloc_unit
    limits = {
        "registers": int(by_regs),
        "threads": lim.max_threads_per_sm // t,
        "blocks": lim.max_blocks_per_sm,
        "shared_memory": lim.shared_per_sm // smem,
    }
    blocks = min(limits.values())
    active = blocks * warps_per_block
    return {
        "threads_per_block": t,
        "registers_per_thread": int(registers),
        "shared_bytes_per_block": int(shared_bytes),
        "warps_per_block": warps_per_block,
        "registers_per_warp_allocated": regs_per_warp,
        "blocks_limit": limits,
        "blocks_per_sm": blocks,
        "limited_by": [k for k, v in limits.items() if v == blocks],
        "active_warps": active,
        "max_warps": max_warps,
        "occupancy": active / max_warps,
        "formula": OCCUPANCY_FORMULA,
    }


_ARITH = frozenset(
    "add sub mul fma mad div rcp sqrt rsqrt neg abs min max ex2 lg2 sin cos tanh copysign".split()
)


def fp_instruction_counts(ptx: str) -> dict[str, int]:
    """Count PTX instructions by floating-point type.

    An instruction counts as f64 (f32) when a dotted part of its opcode is ``f64``
    (``f32``): ``add.f64``, ``ld.global.f64``, ``cvt.rn.f64.s64`` (a conversion between
    the two counts in both).  ``*_arith`` keeps only arithmetic (add, mul, fma, div, rcp,
    sqrt, ex2, lg2, sin, cos ...), without loads, stores, moves, compares and conversions.
    Directives, labels, comments and braces are not instructions.
    """
    counts = dict.fromkeys(("instructions", "f64", "f32", "f64_arith", "f32_arith"), 0)
    for raw in ptx.splitlines():
        line = raw.split("//", 1)[0].strip()
        if not line or line[0] in ".{}()" or line.endswith(":") or line.startswith("$"):
            continue
        if line.startswith("@"):  # predicate guard
            parts = line.split(None, 1)
            if len(parts) < 2:
                continue
            line = parts[1]
        opcode = line.split(None, 1)[0].rstrip(";")
        if not re.fullmatch(r"[a-z][a-z0-9_.]*", opcode):
            continue
        counts["instructions"] += 1
        pieces = opcode.split(".")
        arith = pieces[0] in _ARITH
        for ty in ("f64", "f32"):
            if ty in pieces[1:]:
                counts[ty] += 1
                counts[f"{ty}_arith"] += int(arith)
    return counts


# --------------------------------------------------------------------------------------
# One kernel, one architecture: everything
# --------------------------------------------------------------------------------------


def static_report(spec: KernelSpec, cc: tuple[int, int], *,
                  ptxas: Path | None = None) -> tuple[CompiledPtx, dict[str, Any]]:  # fmt: skip
    """Compile, assemble and measure ``spec`` for ``cc``: the PTX and a JSON-ready record."""
    compiled = compile_kernel_ptx(spec, cc)
    res = assemble(compiled.ptx, cc, max_registers=spec.options.get("max_registers"),
                   ptxas=ptxas)  # fmt: skip
    occ = occupancy(res.registers, spec.threads_per_block, res.shared_bytes, cc)
    record = {
        "kernel": spec.name,
        "module": spec.module,
        "arch": compiled.arch,
        "threads_per_block": spec.threads_per_block,
        "options": dict(spec.options),
        "registers_per_thread": res.registers,
        "stack_frame_bytes": res.stack_frame_bytes,
        "spill_store_bytes": res.spill_store_bytes,
        "spill_load_bytes": res.spill_load_bytes,
        "shared_bytes": res.shared_bytes,
        "occupancy": occ,
        "ptx_instructions": fp_instruction_counts(compiled.ptx),
        "ptx_bytes": len(compiled.ptx.encode()),
        "compile_s": {"ptx": compiled.seconds, "ptxas": res.seconds},
    }
    return compiled, record
