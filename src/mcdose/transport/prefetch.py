"""A software prefetch for the CPU kernels: ask for a cache line before it is needed.

The CPU engine's decays wait mostly on memory (see :mod:`mcdose.transport.cpu`); where the
next address is known early — the voxel of a decay a few places on in the chunk — the
kernel asks for its density and tally lines while the current decay runs, so the misses
overlap instead of following each other.  :func:`prefetch_row` is LLVM's ``llvm.prefetch``
(a hint: it changes no value, and a bad address does not fault).
"""

from __future__ import annotations

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic


@intrinsic
def prefetch_row(typingctx, array, index):
    """Prefetch, for reading, the cache line holding ``array[index, 0, …]`` (a hint only).

    Parameters
    ----------
    array : ndarray
        Any array; its first axis is indexed.
    index : int
        Index along the first axis (not bounds-checked; the hint never faults).
    """
    if not isinstance(array, types.Array) or not isinstance(index, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        array_type, index_type = signature.args
        ary = context.make_array(array_type)(context, builder, args[0])
        stride = cgutils.unpack_tuple(builder, ary.strides, array_type.ndim)[0]
        i = context.cast(builder, args[1], index_type, types.intp)
        address = builder.add(builder.ptrtoint(ary.data, cgutils.intp_t), builder.mul(i, stride))
        byte_pointer = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn_type = ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fn_type, "llvm.prefetch.p0")
        # read (0), high temporal locality (3), data cache (1)
        builder.call(fn, [builder.inttoptr(address, byte_pointer), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(array, index), codegen
