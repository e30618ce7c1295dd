"""The vector operations of `ser.features.lane_fft`, as numba intrinsics emitting LLVM `<8 x float>` code.

Each acts on LANES frames at once: a vector is LANES consecutive float32 (one frame each) at a
flat index of a float32 array. numba's own loops over such short rows did not vectorise
(alias checks and index wrap-around around every 8-element loop), hence explicit vectors.
Not meant to be called directly: `ser.features.lane_fft.lane_fft_clips` drives them.
"""

from __future__ import annotations

import math

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

LANES = 8  # frames per vector (16: no faster with AVX-512, and with AVX2 no faster than scipy)
_F32 = ir.FloatType()
_VEC = ir.VectorType(_F32, LANES)
_I32 = ir.IntType(32)


def _data(context, builder, arrty, arr):
    return context.make_array(arrty)(context, builder, arr).data


def _vector_ptr(builder, base, index, width=LANES):
    return builder.bitcast(cgutils.gep_inbounds(builder, base, index), ir.VectorType(_F32, width).as_pointer())


def _load(builder, base, index):
    return builder.load(_vector_ptr(builder, base, index), align=4)


def _store(builder, value, base, index):
    builder.store(value, _vector_ptr(builder, base, index), align=4)


def _mask(indices):
    return ir.Constant(ir.VectorType(_I32, len(indices)), indices)


def _splat(builder, scalar):
    one = builder.insert_element(ir.Constant(_VEC, ir.Undefined), scalar, ir.Constant(_I32, 0))
    return builder.shuffle_vector(
        one, ir.Constant(_VEC, ir.Undefined), ir.Constant(ir.VectorType(_I32, LANES), [0] * LANES)
    )


def _dft8(b, xs):
    """The 8-point forward DFT of xs (8 (re, im) vector pairs): two 4-point DFTs (even, odd) combined."""

    def dft4(x0, x1, x2, x3):
        s02 = (b.fadd(x0[0], x2[0]), b.fadd(x0[1], x2[1]))
        d02 = (b.fsub(x0[0], x2[0]), b.fsub(x0[1], x2[1]))
        s13 = (b.fadd(x1[0], x3[0]), b.fadd(x1[1], x3[1]))
        d13 = (b.fsub(x1[0], x3[0]), b.fsub(x1[1], x3[1]))
        return [
            (b.fadd(s02[0], s13[0]), b.fadd(s02[1], s13[1])),
            (b.fadd(d02[0], d13[1]), b.fsub(d02[1], d13[0])),  # (x0 - x2) - i (x1 - x3)
            (b.fsub(s02[0], s13[0]), b.fsub(s02[1], s13[1])),
            (b.fsub(d02[0], d13[1]), b.fadd(d02[1], d13[0])),  # (x0 - x2) + i (x1 - x3)
        ]

    even, odd = dft4(*xs[0::2]), dft4(*xs[1::2])
    root = _splat(b, ir.Constant(_F32, math.sqrt(0.5)))
    (o1r, o1i), (o2r, o2i), (o3r, o3i) = odd[1:]
    # odd[k] times W8^k: 1, (1 - i)/sqrt 2, -i, -(1 + i)/sqrt 2
    turned = [
        odd[0],
        (b.fmul(root, b.fadd(o1r, o1i)), b.fmul(root, b.fsub(o1i, o1r))),
        (o2i, b.fneg(o2r)),
        (b.fmul(root, b.fsub(o3i, o3r)), b.fneg(b.fmul(root, b.fadd(o3r, o3i)))),
    ]
    low = [(b.fadd(e[0], t[0]), b.fadd(e[1], t[1])) for e, t in zip(even, turned, strict=True)]
    high = [(b.fsub(e[0], t[0]), b.fsub(e[1], t[1])) for e, t in zip(even, turned, strict=True)]
    return low + high


def _twiddled(b, ys, table_re, table_im, at):
    """ys[r] times table[at + r - 1] for r = 1..7."""
    out = [ys[0]]
    for r in range(1, 8):
        k = b.add(at, ir.Constant(at.type, r - 1))
        wr = _splat(b, b.load(cgutils.gep_inbounds(b, table_re, k)))
        wi = _splat(b, b.load(cgutils.gep_inbounds(b, table_im, k)))
        yr, yi = ys[r]
        out.append((b.fsub(b.fmul(wr, yr), b.fmul(wi, yi)), b.fadd(b.fmul(wr, yi), b.fmul(wi, yr))))
    return out


def _arrays(context, builder, signature, args):
    """Data pointers for the array arguments, the other arguments as they are."""
    pairs = zip(signature.args, args, strict=True)
    return [_data(context, builder, t, a) if isinstance(t, types.Array) else a for t, a in pairs]


@intrinsic
def first_stage(typingctx, rows, offsets, column, window, p, m, table_re, table_im, out_re, out_im, energy):
    """x[n] = rows[offsets[2n] + column] window[2n] + i rows[offsets[2n + 1] + column] window[2n + 1]
    (8 frames) for n = p + j m, j < 8: out[(8p + r) LANES :] = W^{rp} DFT8(x)[r]; energy[:8] += |x|^2."""
    i = types.intp
    sig = types.void(rows, offsets, i, window, i, i, table_re, table_im, out_re, out_im, energy)

    def codegen(context, b, signature, args):
        rows_, offsets_, column, window_, p, m, t_re, t_im, o_re, o_im, energy_ = _arrays(context, b, signature, args)
        xs, total = [], None
        for j in range(8):
            n2 = b.shl(b.add(p, b.mul(m, ir.Constant(p.type, j))), ir.Constant(p.type, 1))
            pair = []
            for i in (n2, b.add(n2, ir.Constant(p.type, 1))):
                samples = _load(b, rows_, b.add(b.load(cgutils.gep_inbounds(b, offsets_, i)), column))
                pair.append(b.fmul(samples, _splat(b, b.load(cgutils.gep_inbounds(b, window_, i)))))
            squares = b.fadd(b.fmul(pair[0], pair[0]), b.fmul(pair[1], pair[1]))
            total = squares if total is None else b.fadd(total, squares)
            xs.append(tuple(pair))
        zero = ir.Constant(p.type, 0)
        _store(b, b.fadd(_load(b, energy_, zero), total), energy_, zero)
        ys = _twiddled(b, _dft8(b, xs), t_re, t_im, b.mul(p, ir.Constant(p.type, 7)))
        at = b.mul(p, ir.Constant(p.type, 8 * LANES))
        for re, im in ys:
            _store(b, re, o_re, at)
            _store(b, im, o_im, at)
            at = b.add(at, ir.Constant(p.type, LANES))
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def middle_stage(typingctx, in_re, in_im, at, step, out_re, out_im, to, out_step, table_re, table_im, table_at):
    """out[to + r out_step] = W^{rp} DFT8(in[at + j step], j < 8)[r], twiddles from table[table_at:]."""
    i = types.intp
    sig = types.void(in_re, in_im, i, i, out_re, out_im, i, i, table_re, table_im, i)

    def codegen(context, b, signature, args):
        x_re, x_im, at, step, y_re, y_im, to, out_step, t_re, t_im, t_at = _arrays(context, b, signature, args)
        xs = []
        for _ in range(8):
            xs.append((_load(b, x_re, at), _load(b, x_im, at)))
            at = b.add(at, step)
        for re, im in _twiddled(b, _dft8(b, xs), t_re, t_im, t_at):
            _store(b, re, y_re, to)
            _store(b, im, y_im, to)
            to = b.add(to, out_step)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def last_stage(typingctx, in_re, in_im, at, step, spectrum, to, out_step):
    """spectrum[to + r out_step :] = DFT8(in[at + j step], j < 8)[r] as 8 interleaved (re, im) pairs."""
    sig = types.void(in_re, in_im, types.intp, types.intp, spectrum, types.intp, types.intp)

    def codegen(context, b, signature, args):
        x_re, x_im, at, step, out, to, out_step = _arrays(context, b, signature, args)
        xs = []
        for _ in range(8):
            xs.append((_load(b, x_re, at), _load(b, x_im, at)))
            at = b.add(at, step)
        interleave = ir.Constant(ir.VectorType(_I32, 2 * LANES), [k for j in range(LANES) for k in (j, j + LANES)])
        for re, im in _dft8(b, xs):
            b.store(b.shuffle_vector(re, im, interleave), _vector_ptr(b, out, to, 2 * LANES), align=4)
            to = b.add(to, out_step)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def transpose_tile(typingctx, src, at, stride, dst, to, out_stride):
    """dst[to + j out_stride + i] = src[at + i stride + j], i, j < 8: 3 rounds of block swaps."""
    sig = types.void(src, types.intp, types.intp, dst, types.intp, types.intp)

    def codegen(context, b, signature, args):
        src_, at, stride, dst_, to, out_stride = _arrays(context, b, signature, args)
        v = []
        for _ in range(LANES):
            v.append(_load(b, src_, at))
            at = b.add(at, stride)
        block = LANES // 2
        while block:  # swap the off-diagonal (block x block) blocks of every (2 block)-square
            keep = _mask([j if not j & block else LANES + j - block for j in range(LANES)])
            swap = _mask([j + block if not j & block else LANES + j for j in range(LANES)])
            for i in (i for i in range(LANES) if not i & block):
                v[i], v[i + block] = (
                    b.shuffle_vector(v[i], v[i + block], keep),
                    b.shuffle_vector(v[i], v[i + block], swap),
                )
            block //= 2
        for row in v:
            _store(b, row, dst_, to)
            to = b.add(to, out_stride)
        return context.get_dummy_value()

    return sig, codegen
