package dev.cortado.ops.opinfo;

import dev.cortado.quant.QuantizationReference;
import dev.cortado.quant.WeightOnly;
import dev.cortado.quant.WeightOnly.Format;
import dev.cortado.tensor.DType;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;

/**
 * Weight-only quantized GEMM / GEMV (dev.cortado.quant.WeightOnly): packing int4 / uint4 / fp8
 * codes, and y = x W^T + bias with W dequantized in the kernel. The reference unpacks the bytes by
 * the documented layout (quant_weight.h) and computes w = (q - z) s (fp8: value(q) s) and the
 * sums in float64. Tolerances: packing is exact (integers); the product is float32 accumulation
 * in lanes (k <= 256 here; relative 1e-5 of each element plus 1e-5 of the largest), and for
 * bfloat16 activations the result is rounded to bfloat16 (relative 8e-3 plus 4e-3 of the largest).
 * The samples cover both AVX-512 register-tile edges (m % 4, n % 4 and n % 2 != 0), the GEMV
 * (m = 1), groups of 32, 64 and 128 and per channel (g = k), zero points, a transposed view of x,
 * size-1 and empty dims. Packing fp8 codes (a byte copy) has no sample here (the sample inputs
 * cannot be fp8 tensors); WeightOnlyTest covers it through PackedWeights.quantize.
 */
final class WeightOnlySamples {
    private WeightOnlySamples() {
    }

    private static final String F = "quantization";

    static final List<OpInfo> ENTRIES = List.of(
            OpInfo.of("wq_pack", F, "packs weight codes [n, k] once: int4 two per byte (16-byte blocks of 32 k: k0 + i low "
                            + "nibble, k0 + 16 + i high, as q + 8 for signed) or fp8 bytes in k order")
                    .samples((r, t) -> List.of(
                            new Sample("int4 [5, 64]", Format.INT4, QuantizationSamples.ints(r, DType.INT8, -8, 7, 5, 64)),
                            new Sample("int4, transposed view [3, 32]", Format.INT4,
                                    QuantizationSamples.ints(r, DType.INT8, -8, 7, 3, 32).view()),
                            new Sample("uint4 [4, 96]", Format.UINT4, QuantizationSamples.ints(r, DType.UINT8, 0, 15, 4, 96)),
                            new Sample("size-1 rows [1, 32]", Format.INT4, QuantizationSamples.ints(r, DType.INT8, -8, 7, 1, 32)),
                            new Sample("empty [0, 32]", Format.UINT4, QuantizationSamples.ints(r, DType.UINT8, 0, 15, 0, 32))))
                    .reference((s, in) -> new double[][] {pack((Format) s.attrs(), in[0], s.dims(0))})
                    .dtype(DType.FLOAT32, 0, 0)
                    .notDifferentiable("integer data layout")
                    .build(),
            OpInfo.of("wq_matmul", F, "y = x W^T + bias with W int4 / uint4 / fp8 packed, group-wise scales (and int4 zero "
                            + "points) along k, dequantized in registers; float32 or bfloat16 x")
                    .samples((r, t) -> List.of(
                            matmul(r, t, "int4 g32, bias [3, 64] x [5, 64]^T", Format.INT4, 32, 3, 64, 5, false, true, false),
                            matmul(r, t, "uint4 g64 with zero points [7, 128] x [9, 128]^T", Format.UINT4, 64, 7, 128, 9, true,
                                    false, false),
                            matmul(r, t, "int4 per channel (g = k = 128), GEMV [1, 128] x [13, 128]^T", Format.INT4, 128, 1, 128, 13,
                                    false, true, false),
                            matmul(r, t, "int4 g32 with zero points, x transposed view [6, 96] x [6, 96]^T", Format.INT4, 32, 6, 96,
                                    6, true, true, true),
                            matmul(r, t, "fp8 e4m3 g32 [2, 64] x [7, 64]^T", Format.FLOAT8_E4M3, 32, 2, 64, 7, false, true, false),
                            matmul(r, t, "fp8 e5m2 g64 [5, 128] x [3, 128]^T", Format.FLOAT8_E5M2, 64, 5, 128, 3, false, false,
                                    false),
                            matmul(r, t, "uint4 g128, GEMV [1, 256] x [4, 256]^T", Format.UINT4, 128, 1, 256, 4, true, true, false),
                            matmul(r, t, "size 1 [1, 32] x [1, 32]^T", Format.INT4, 32, 1, 32, 1, false, false, false),
                            matmul(r, t, "m = 0", Format.INT4, 32, 0, 32, 3, false, true, false),
                            matmul(r, t, "n = 0", Format.UINT4, 32, 2, 64, 0, true, false, false)))
                    .reference((s, in) -> new double[][] {matmulRef((WeightOnly.Spec) s.attrs(), s, in)})
                    .dtype(DType.FLOAT32, 1e-5, 1e-5)
                    .dtype(DType.BFLOAT16, 8e-3, 4e-3)
                    // CUDA's tensor-core path (m > 4) multiplies float32 x as two bfloat16 halves (~2^-18 relative each)
                    .cuda(DType.FLOAT32, 3e-5, 3e-5)
                    .notDifferentiable("quantized weights (inference kernel)")
                    .build());

    /** Random finite fp8 codes, as their values in the fp8 dtype. */
    private static Arg fp8Codes(Random r, DType type, long... dims) {
        double[] v = new double[Gen.prod(dims)];
        for (int i = 0; i < v.length; i++) {
            double f;
            do {
                f = QuantizationReference.fp8Value(type, r.nextInt(256));
            } while (!Double.isFinite(f));
            v[i] = f;
        }
        return new Arg(v, dims, type, false, false, true);
    }

    /** The fp8 code of a value (the sign of zero kept). */
    private static int fp8Code(DType type, double v) {
        for (int c = 0; c < 256; c++) {
            if (Double.doubleToRawLongBits(QuantizationReference.fp8Value(type, c)) == Double.doubleToRawLongBits(v)) {
                return c;
            }
        }
        throw new AssertionError(v + " is not an fp8 value");
    }

    /** The packed bytes of codes q [n, k] by the layout of quant_weight.h. */
    static double[] pack(Format f, double[] q, long[] dims) {
        int n = (int) dims[0];
        int k = (int) dims[1];
        double[] out = new double[(int) f.packedBytes(n, k)];
        for (int j = 0; j < n; j++) {
            for (int kk = 0; kk < k; kk++) {
                double v = q[j * k + kk];
                if (!f.isInt4()) {
                    out[j * k + kk] = fp8Code(f.codes(), v);
                    continue;
                }
                int u = (int) v + (f == Format.INT4 ? 8 : 0);
                int blk = kk / 32;
                int i = kk % 32;
                int at = j * k / 2 + blk * 16 + i % 16;
                out[at] += i < 16 ? u : u * 16;
            }
        }
        return out;
    }

    /** The codes q [n, k] back from the packed bytes. */
    static double[] unpack(Format f, double[] packed, int n, int k) {
        double[] q = new double[n * k];
        for (int j = 0; j < n; j++) {
            for (int kk = 0; kk < k; kk++) {
                if (!f.isInt4()) {
                    q[j * k + kk] = QuantizationReference.fp8Value(f.codes(), (int) packed[j * k + kk]);
                    continue;
                }
                int b = (int) packed[j * k / 2 + (kk / 32) * 16 + (kk % 32) % 16];
                int u = (kk % 32) < 16 ? b & 15 : b >> 4;
                q[j * k + kk] = u - (f == Format.INT4 ? 8 : 0);
            }
        }
        return q;
    }

    private static double[] matmulRef(WeightOnly.Spec spec, Sample s, double[][] in) {
        long[] xd = s.dims(0);
        int m = (int) xd[0];
        int k = (int) xd[1];
        int n = (int) s.dims(2)[0];
        int groups = k / spec.group();
        double[] q = unpack(spec.format(), in[1], n, k);
        double[] zp = in.length > 3 ? in[3] : null;
        double[] bias = in.length > 4 ? in[4] : null;
        double[] y = new double[m * n];
        for (int i = 0; i < m; i++) {
            for (int j = 0; j < n; j++) {
                double acc = bias == null ? 0 : bias[j];
                for (int kk = 0; kk < k; kk++) {
                    int p = j * groups + kk / spec.group();
                    double w = (q[j * k + kk] - (zp == null ? 0 : zp[p])) * in[2][p];
                    acc += in[0][i * k + kk] * w;
                }
                y[i * n + j] = acc;
            }
        }
        return y;
    }

    /** x [m, k] in the sample dtype, random codes packed by the reference, scales, zero points, bias. */
    private static Sample matmul(Random r, DType t, String label, Format f, int group, int m, int k, int n, boolean zeroPoints,
                                 boolean bias, boolean view) {
        Arg x = Gen.ur(r, t, -2, 2, m, k);
        if (view) {
            x = x.view();
        }
        long[] qd = {n, k};
        Arg codes = f.isInt4() ? QuantizationSamples.ints(r, f.codes(), f.qmin(), f.qmax(), qd) : fp8Codes(r, f.codes(), qd);
        double[] packed = pack(f, codes.values(), qd);
        int groups = k / group;
        double[] scale = new double[n * groups];
        long[] zp = new long[n * groups];
        for (int i = 0; i < scale.length; i++) {
            scale[i] = (float) ((f.isInt4() ? 0.02 : 0.002) * (0.5 + r.nextDouble()));
            zp[i] = f.qmin() + r.nextInt(f.qmax() - f.qmin() + 1);
        }
        List<Arg> args = new ArrayList<>(List.of(x, new Arg(packed, new long[] {packed.length}, DType.UINT8, false, false, true),
                Arg.of(scale, DType.FLOAT32, n, groups).float32()));
        args.add(zeroPoints ? Arg.int32(zp, n, groups) : null);
        if (bias) {
            args.add(Gen.ur(r, DType.FLOAT32, -1, 1, n).float32());
        }
        return new Sample(label, new WeightOnly.Spec(f, group), args.toArray(Arg[]::new));
    }
}
