package dev.cortado.testing;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.fail;

import dev.cortado.tensor.DType;
import dev.cortado.tensor.Tensor;
import java.util.Arrays;
import java.util.Random;

/**
 * Independent float64 reference helpers for the op tests: random inputs, row-major index math
 * over shapes (broadcasting, views), per-dtype tolerances and comparisons. Nothing here calls a
 * Cortado compute op; tensors are only created ({@link Tensor#of}) and read back.
 */
public final class Reference {
    private Reference() {
    }

    /** A tolerance |got - want| <= abs + rel * |want|. */
    public record Tol(double rel, double abs) {
        public Tol scaled(double f) {
            return new Tol(rel * f, abs * f);
        }
    }

    /**
     * Default elementwise tolerances per dtype. float64: 1e-12 relative (libm vs StrictMath);
     * float32: ~100 ulp relative for transcendental kernels written with float32 polynomials,
     * plus 1e-6 absolute for results that cancel near zero (sin near pi); bfloat16 has an 8-bit
     * significand (half-ulp rounding 2^-9 = 0.2%), float16 11 bits (2^-12 = 0.024%): the kernel
     * computes in float32 then rounds once, so 1e-2 and 2e-3 leave a 5-8x margin.
     */
    public static Tol tol(DType t) {
        return switch (t) {
            case FLOAT64 -> new Tol(1e-12, 1e-13);
            case FLOAT32 -> new Tol(1e-5, 1e-6);
            case BFLOAT16 -> new Tol(1e-2, 1e-5);
            case FLOAT16 -> new Tol(2e-3, 1e-5);
            default -> new Tol(0, 0);
        };
    }

    // ------------------------------------------------------------------ inputs
    public static double[] uniform(Random r, int n, double lo, double hi) {
        double[] d = new double[n];
        for (int i = 0; i < n; i++) {
            d[i] = lo + (hi - lo) * r.nextDouble();
        }
        return d;
    }

    /** Random integers in [lo, hi] (inclusive). */
    public static double[] ints(Random r, int n, long lo, long hi) {
        double[] d = new double[n];
        for (int i = 0; i < n; i++) {
            d[i] = lo + (long) Math.floor(r.nextDouble() * (hi - lo + 1));
        }
        return d;
    }

    /** Values from a coarse grid (multiples of 0.5 in [lo, hi]) so comparisons see ties. */
    public static double[] grid(Random r, int n, double lo, double hi) {
        double[] d = new double[n];
        for (int i = 0; i < n; i++) {
            d[i] = Math.rint((lo + (hi - lo) * r.nextDouble()) * 2) / 2;
        }
        return d;
    }

    public static boolean[] bools(Random r, int n) {
        boolean[] b = new boolean[n];
        for (int i = 0; i < n; i++) {
            b[i] = r.nextBoolean();
        }
        return b;
    }

    /**
     * A contiguous tensor of {@code dtype} holding {@code data} (integers for integer dtypes; a
     * 16-bit float dtype rounds, read the tensor back with toDoubleArray() for the exact inputs).
     */
    public static Tensor make(double[] data, DType dtype, long... dims) {
        int n = data.length;
        switch (dtype) {
            case FLOAT64:
                return Tensor.of(data.clone(), dims);
            case FLOAT32: {
                float[] f = new float[n];
                for (int i = 0; i < n; i++) {
                    f[i] = (float) data[i];
                }
                return Tensor.of(f, dims);
            }
            case BFLOAT16:
            case FLOAT16: {
                try (Tensor t = Tensor.of(data.clone(), dims)) {
                    return t.to(dtype);
                }
            }
            case INT32: {
                int[] v = new int[n];
                for (int i = 0; i < n; i++) {
                    v[i] = (int) data[i];
                }
                return Tensor.of(v, dims);
            }
            case INT64: {
                long[] v = new long[n];
                for (int i = 0; i < n; i++) {
                    v[i] = (long) data[i];
                }
                return Tensor.of(v, dims);
            }
            case INT8:
            case UINT8: {
                byte[] v = new byte[n];
                for (int i = 0; i < n; i++) {
                    v[i] = (byte) (long) data[i];
                }
                return Tensor.of(v, dtype, dims);
            }
            case BOOL: {
                boolean[] v = new boolean[n];
                for (int i = 0; i < n; i++) {
                    v[i] = data[i] != 0;
                }
                return Tensor.of(v, dims);
            }
            default:
                throw new IllegalArgumentException("make: " + dtype);
        }
    }

    /** Values (as doubles) of {@code t}, integers read exactly through toLongArray(). */
    public static double[] values(Tensor t) {
        if (t.dtype().isInteger()) {
            long[] l = t.toLongArray();
            double[] d = new double[l.length];
            for (int i = 0; i < l.length; i++) {
                d[i] = l[i];
            }
            return d;
        }
        if (t.dtype() == DType.BOOL) {
            boolean[] b = t.toBooleanArray();
            double[] d = new double[b.length];
            for (int i = 0; i < b.length; i++) {
                d[i] = b[i] ? 1 : 0;
            }
            return d;
        }
        return t.toDoubleArray();
    }

    /** Wraps {@code v} into the range of integer dtype {@code t} (two's complement). */
    public static long wrap(long v, DType t) {
        return switch (t) {
            case INT8 -> (byte) v;
            case UINT8 -> v & 0xFF;
            case INT32 -> (int) v;
            default -> v;
        };
    }

    /** Rounds to float32 (the value a float32 kernel holds). */
    public static double f32(double v) {
        return (float) v;
    }

    /** float32 -> bfloat16 -> float32 with round to nearest even (NaN kept). */
    public static double bf16(double v) {
        float f = (float) v;
        if (Float.isNaN(f)) {
            return Double.NaN;
        }
        int u = Float.floatToRawIntBits(f);
        u += 0x7fff + ((u >>> 16) & 1);
        return Float.intBitsToFloat(u & 0xffff0000);
    }

    // ------------------------------------------------------------------ index math
    public static long numel(long... dims) {
        long n = 1;
        for (long d : dims) {
            n *= d;
        }
        return n;
    }

    public static long[] contiguousStrides(long... dims) {
        long[] s = new long[dims.length];
        long acc = 1;
        for (int i = dims.length - 1; i >= 0; i--) {
            s[i] = acc;
            acc *= Math.max(1, dims[i]);
        }
        return s;
    }

    /** Multi-index of flat row-major index {@code flat} in {@code dims}. */
    public static long[] unravel(long flat, long[] dims) {
        long[] idx = new long[dims.length];
        for (int i = dims.length - 1; i >= 0; i--) {
            idx[i] = flat % dims[i];
            flat /= dims[i];
        }
        return idx;
    }

    public static long[] broadcastShape(long[] a, long[] b) {
        int rank = Math.max(a.length, b.length);
        long[] out = new long[rank];
        for (int i = 0; i < rank; i++) {
            long da = i - (rank - a.length) >= 0 ? a[i - (rank - a.length)] : 1;
            long db = i - (rank - b.length) >= 0 ? b[i - (rank - b.length)] : 1;
            if (da != db && da != 1 && db != 1) {
                throw new IllegalArgumentException("no broadcast " + Arrays.toString(a) + " " + Arrays.toString(b));
            }
            out[i] = da == 1 ? db : da;
        }
        return out;
    }

    /** Flat index into a contiguous {@code src} of the element that broadcasts to {@code outIdx}. */
    public static int broadcastIndex(long[] outIdx, long[] src) {
        int off = outIdx.length - src.length;
        long flat = 0;
        for (int i = 0; i < src.length; i++) {
            long ix = src[i] == 1 ? 0 : outIdx[i + off];
            flat = flat * src[i] + ix;
        }
        return (int) flat;
    }

    /** {@code src} (contiguous, shape srcDims) broadcast to {@code outDims}, row-major. */
    public static double[] broadcast(double[] src, long[] srcDims, long[] outDims) {
        int n = (int) numel(outDims);
        double[] out = new double[n];
        for (int i = 0; i < n; i++) {
            out[i] = src[broadcastIndex(unravel(i, outDims), srcDims)];
        }
        return out;
    }

    /**
     * The elements of a strided view (dims, strides, offset in elements) of a contiguous base
     * array, in row-major order of the view: the index math, done independently of the kernels.
     */
    public static double[] strided(double[] base, long[] dims, long[] strides, long offset) {
        int n = (int) numel(dims);
        double[] out = new double[n];
        for (int i = 0; i < n; i++) {
            long[] idx = unravel(i, dims);
            long p = offset;
            for (int d = 0; d < dims.length; d++) {
                p += idx[d] * strides[d];
            }
            out[i] = base[(int) p];
        }
        return out;
    }

    /** The view's elements, from its base's values through its strides and offset. */
    public static double[] viewOf(double[] base, Tensor view) {
        return strided(base, view.dims(), view.strides(), view.offset());
    }

    // ------------------------------------------------------------------ comparisons
    /** One element: NaN must meet NaN, an infinity the same infinity, else |got - want| <= limit. */
    public static boolean within(double want, double got, double limit) {
        if (Double.isNaN(want) || Double.isNaN(got)) {
            return Double.isNaN(want) && Double.isNaN(got);
        }
        if (Double.isInfinite(want) || Double.isInfinite(got)) {
            return want == got;
        }
        return Math.abs(got - want) <= limit;
    }

    /** Elementwise |got - want| <= abs + rel |want|; NaN must match NaN, infinities exactly. */
    public static void assertClose(double[] want, double[] got, Tol tol, String what) {
        assertEquals(want.length, got.length, what + ": length");
        int bad = -1;
        double worst = 0;
        for (int i = 0; i < want.length; i++) {
            double w = want[i];
            double g = got[i];
            double lim = tol.abs() + tol.rel() * Math.abs(w);
            boolean ok = within(w, g, lim);
            if (!ok && Double.isFinite(w) && Double.isFinite(g)) {
                double err = Math.abs(g - w);
                if (err / Math.max(lim, 1e-300) > worst) {
                    worst = err / Math.max(lim, 1e-300);
                }
            }
            if (!ok && bad < 0) {
                bad = i;
            }
        }
        if (bad >= 0) {
            fail(what + ": element " + bad + " is " + got[bad] + ", expected " + want[bad] + " (tolerance rel "
                    + tol.rel() + " abs " + tol.abs() + ", worst error/limit " + worst + ")");
        }
    }

    /** The largest finite |v| (0 for none). */
    public static double maxAbs(double[] v) {
        double m = 0;
        for (double x : v) {
            if (Double.isFinite(x)) {
                m = Math.max(m, Math.abs(x));
            }
        }
        return m;
    }

    /**
     * {@code t} with its absolute part taken as a fraction of the reference's magnitude:
     * {@code abs = t.abs() * max|want|}. A tolerance written for O(1) values then stays below the
     * values of outputs that are small everywhere (softmax rows of 1500 entries, attention
     * gradients). A reference that is exactly zero everywhere (dq with one key, the dx of a
     * one-element norm) keeps {@code t}: the kernel's answer is then rounding noise of O(1)
     * terms, and zero is the right answer anyway.
     */
    public static Tol relativeTo(Tol t, double[] want) {
        double m = maxAbs(want);
        return m == 0 ? t : new Tol(t.rel(), t.abs() * m);
    }

    /**
     * Fails when an all-zero output would pass {@link #assertClose} with {@code tol}, i.e. when
     * the tolerance is as large as every reference value (a kernel that writes nothing would
     * pass). A reference that is entirely zero (or empty) passes: zero is then the right answer.
     */
    public static void assertZerosRejected(double[] want, Tol tol, String what) {
        boolean anyNonZero = false;
        for (double w : want) {
            if (Double.isNaN(w) || Double.isInfinite(w)) {
                return; // zero never matches NaN or inf
            }
            if (w != 0) {
                anyNonZero = true;
                if (Math.abs(w) > tol.abs() + tol.rel() * Math.abs(w)) {
                    return;
                }
            }
        }
        if (anyNonZero) {
            fail(what + ": the tolerance (rel " + tol.rel() + ", abs " + tol.abs() + ") accepts an all-zero output;"
                    + " max |reference| is " + maxAbs(want));
        }
    }

    /** {@link #assertZerosRejected} (the tolerance can fail), then {@link #assertClose}. */
    public static void assertCloseChecked(double[] want, double[] got, Tol tol, String what) {
        assertZerosRejected(want, tol, what);
        assertClose(want, got, tol, what);
    }

    /** Exact equality, NaN equal to NaN. */
    public static void assertExact(double[] want, double[] got, String what) {
        assertArrayEquals(want, got, 0.0, what);
    }

    /** Dims of a tensor as int-indexable long[] (for messages). */
    public static String dims(long... d) {
        return Arrays.toString(d);
    }

    /** Converts a double to the value a float16/bfloat16/float32/float64 tensor of {@code t} stores (reference path). */
    public static double roundTo(double v, DType t) {
        return switch (t) {
            case FLOAT32 -> (float) v;
            case BFLOAT16 -> bf16(v);
            default -> v;
        };
    }
}
