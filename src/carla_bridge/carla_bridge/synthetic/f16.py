"""float32 -> IEEE half-precision bits in compiled (numba) code, on every x86-64 target.

The flow images of the dataset are stored as float16 (``dataset.io``); :data:`f16_planes`
converts an H x W x 2 float32 image to the Fortran-ordered float16 layout in one pass.
"""

from __future__ import annotations

import numpy as np

from carla_bridge.synthetic.kernels import HAVE_NUMBA, _compile

if HAVE_NUMBA:
    from llvmlite import ir
    from numba.core import types
    from numba.extending import intrinsic

    @intrinsic
    def f32_bits(typingctx, x):  # noqa: ANN001, ANN201, ARG001
        """The IEEE bits of a float32 value as uint32 (a bitcast: no instruction of any ISA)."""
        sig = types.uint32(types.float32)

        def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202, ARG001
            return builder.bitcast(args[0], ir.IntType(32))

        return sig, codegen

    @intrinsic
    def half_bits_f16c(typingctx, x):  # noqa: ANN001, ANN201, ARG001
        """:func:`_half_bits` by LLVM's ``fptrunc`` to half: one F16C instruction
        (``vcvtps2ph``, as cv2 converts to CV_16F). Only for targets with F16C: without it LLVM
        calls compiler-rt's ``__truncsfhf2``, which numba's JIT does not link (the kernel then
        jumps to address 0: a segfault under ``NUMBA_CPU_NAME=generic``)."""
        sig = types.uint16(types.float32)

        def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202, ARG001
            return builder.bitcast(builder.fptrunc(args[0], ir.HalfType()), ir.IntType(16))

        return sig, codegen

    def _target_has_f16c() -> bool:
        """Whether numba compiles for a CPU with F16C: the features it passes to LLVM
        (``NUMBA_CPU_FEATURES``, empty for ``NUMBA_CPU_NAME=generic``, else the host's).
        A CPU model that implies F16C with an empty feature list counts as without (slower,
        same bits)."""
        from llvmlite import binding
        from numba.core import config

        feats = config.CPU_FEATURES
        if feats is None:
            feats = binding.get_host_cpu_features().flatten()
        return "+f16c" in feats.split(",")

else:  # pragma: no cover

    def f32_bits(x):  # noqa: ANN001, ANN201
        return int(np.float32(x).view(np.uint32))


def _half_bits(x):  # noqa: ANN001, ANN202
    """The IEEE half-precision bits of a float32 value, rounded to nearest even, as the F16C
    conversion cv2 uses for CV_16F computes them (a NaN stays a NaN: sign and the payload's top
    bits kept, quiet bit set).

    Integer operations only, so it runs on every x86-64 target (the same bits as
    :func:`half_bits_f16c` for every float32 input, checked exhaustively for the positive ones;
    about 1-2 ms slower per 640 x 480 flow image, hence used only where F16C is missing).
    """
    u = f32_bits(x)
    sign = (u >> 16) & 0x8000
    a = u & 0x7FFFFFFF
    if a >= 0x7F800000:  # inf, NaN
        return sign | 0x7C00 | ((0x200 | ((a >> 13) & 0x3FF)) if a > 0x7F800000 else 0)
    if a >= 0x477FF000:  # 65520 and up round to inf
        return sign | 0x7C00
    if a >= 0x38800000:  # normal half: rebias the exponent (127 - 15), round at bit 13
        m = a - 0x38000000
        return sign | ((m + 0xFFF + ((m >> 13) & 1)) >> 13)
    e = a >> 23
    if e < 102:  # below 2 ** -25: rounds to zero
        return sign
    mant = (a & 0x7FFFFF) | 0x800000  # subnormal half: mant * 2 ** (e - 150) in 2 ** -24 units
    shift = 126 - e
    r = mant >> shift
    rem = mant & ((1 << shift) - 1)
    half = 1 << (shift - 1)
    if rem > half or (rem == half and (r & 1) == 1):
        r += 1
    return sign | r


def _f16_planes(flow, out):
    """float16 bits of an H x W x 2 float32 image as its Fortran-ordered layout: ``out`` (2 x W x
    H uint16) holds plane k transposed (``out[k, j, i] = half(flow[i, j, k])``), blocks of rows
    at a time so that the transposed writes stay in cache."""
    h, w = flow.shape[0], flow.shape[1]
    for i0 in range(0, h, 64):
        i1 = min(i0 + 64, h)
        for j in range(w):
            o0, o1 = out[0, j], out[1, j]
            for i in range(i0, i1):
                o0[i] = half_bits(flow[i, j, 0])
                o1[i] = half_bits(flow[i, j, 1])


half_bits_soft = _compile(_half_bits)
# F16C where numba targets it, the integer version elsewhere (no libcall numba cannot link)
half_bits = half_bits_f16c if HAVE_NUMBA and _target_has_f16c() else half_bits_soft
f16_planes = _compile(_f16_planes)
