package dev.cortado.ops.opinfo;

import dev.cortado.ops.Convolution.Activation;
import dev.cortado.quant.Int8Gemm;
import dev.cortado.quant.QuantScheme;
import dev.cortado.quant.Quantization;
import dev.cortado.quant.QuantizationReference;
import dev.cortado.tensor.DType;
import java.util.List;
import java.util.Random;

/**
 * Quantization (dev.cortado.quant): quantize (int8, uint8, packed int4, fp8 E4M3/E5M2; per tensor,
 * per channel, per group; a transposed view; size-1 and empty dims), dequantize, requantize and
 * dynamic quantization. The references are QuantizationReference's (float32 division and
 * multiplication as IEEE defines them, Math.rint for round half to even, fp8 by the nearest of
 * the 256 decoded codes). Every output must match exactly (tolerance 0): the kernels compute the
 * same float32 operations.
 */
final class QuantizationSamples {
    private QuantizationSamples() {
    }

    private static final String F = "quantization";

    static final List<OpInfo> ENTRIES = List.of(
            OpInfo.of("quantize", F, "q = clamp(rne(x / scale) + zero_point, qmin, qmax), or fp8(x / scale) "
                            + "(round to nearest even, saturating); per tensor, channel or group")
                    .samples((r, t) -> List.of(
                            quantize(r, t, "int8 per tensor [5, 7]", QuantScheme.perTensor(DType.INT8), false, 5, 7),
                            quantize(r, t, "uint8 per channel axis 1, transposed view [4, 6]",
                                    QuantScheme.perChannel(DType.UINT8, 1), true, 4, 6),
                            quantize(r, t, "int8 per channel axis 0 [3, 5]", QuantScheme.perChannel(DType.INT8, 0), false, 3, 5),
                            quantize(r, t, "int4 per group 4 along axis 1 [3, 8]", QuantScheme.perGroup(DType.INT4, 1, 4),
                                    false, 3, 8),
                            quantize(r, t, "int8 per group 2 along axis 0, view [4, 3]", QuantScheme.perGroup(DType.INT8, 0, 2),
                                    true, 4, 3),
                            quantize(r, t, "symmetric int8 [-127, 127] per tensor [2, 3, 5]",
                                    QuantScheme.perTensor(DType.INT8).withRange(-127, 127), false, 2, 3, 5),
                            quantize(r, t, "fp8 e4m3 per channel axis 0 [3, 9]", QuantScheme.perChannel(DType.FLOAT8_E4M3, 0),
                                    false, 3, 9),
                            quantize(r, t, "fp8 e5m2 per tensor [4, 5]", QuantScheme.perTensor(DType.FLOAT8_E5M2), false, 4, 5),
                            quantize(r, t, "size-1 dims [1, 1]", QuantScheme.perChannel(DType.INT8, 1), false, 1, 1),
                            quantize(r, t, "empty [0, 3]", QuantScheme.perChannel(DType.INT8, 1), false, 0, 3)))
                    .reference((s, in) -> new double[][] {QuantizationReference.quantize((QuantScheme) s.attrs(), s.dims(0),
                            in[0], in[1], in.length > 2 ? in[2] : null)})
                    .dtype(DType.FLOAT64, 0, 0).dtype(DType.FLOAT32, 0, 0).halves(0, 0)
                    .notDifferentiable("integer or fp8 result (fake-quant with a straight-through estimator is the trainable form)")
                    .build(),
            OpInfo.of("dequantize", F, "x = (q - zero_point) * scale in float32 (fp8: value(q) * scale)")
                    .samples((r, t) -> List.of(
                            dequantize(r, "int8 per tensor [5, 7]", QuantScheme.perTensor(DType.INT8), false, 5, 7),
                            dequantize(r, "uint8 per channel axis 0, view [4, 6]", QuantScheme.perChannel(DType.UINT8, 0), true, 4, 6),
                            dequantize(r, "int8 per group 3 along axis 1 [2, 9]", QuantScheme.perGroup(DType.INT8, 1, 3), false, 2, 9),
                            dequantize(r, "int32 per channel axis 1 [3, 4]", QuantScheme.perChannel(DType.INT32, 1), false, 3, 4),
                            dequantize(r, "empty [2, 0]", QuantScheme.perTensor(DType.INT8), false, 2, 0)))
                    .reference((s, in) -> new double[][] {QuantizationReference.dequantize((QuantScheme) s.attrs(), s.dims(0),
                            in[0], in[1], in[2])})
                    .dtype(DType.FLOAT64, 0, 0).dtype(DType.FLOAT32, 0, 0)
                    .notDifferentiable("integer input")
                    .build(),
            OpInfo.of("requantize", F, "quantize_out(dequantize_in(x)) without the float tensor (int32 accumulators to "
                            + "int8, per channel to per tensor)")
                    .samples((r, t) -> List.of(
                            requantize(r, "int8 per channel axis 1 -> uint8 per tensor [4, 5]",
                                    QuantScheme.perChannel(DType.INT8, 1), QuantScheme.perTensor(DType.UINT8), 4, 5),
                            requantize(r, "int32 per tensor -> int8 per channel axis 0 [3, 7]",
                                    QuantScheme.perTensor(DType.INT32), QuantScheme.perChannel(DType.INT8, 0), 3, 7),
                            requantize(r, "int8 per tensor -> int4 per group 2 along axis 1 [2, 6]",
                                    QuantScheme.perTensor(DType.INT8), QuantScheme.perGroup(DType.INT4, 1, 2), 2, 6)))
                    .reference((s, in) -> {
                        Quantization.Requant q = (Quantization.Requant) s.attrs();
                        double[] real = QuantizationReference.dequantize(q.in(), s.dims(0), in[0], in[1], in[2]);
                        return new double[][] {QuantizationReference.quantize(q.out(), s.dims(0), real, in[3], in[4])};
                    })
                    .dtype(DType.FLOAT64, 0, 0).dtype(DType.FLOAT32, 0, 0)
                    .notDifferentiable("integer input and result")
                    .build(),
            OpInfo.of("dynamic_quantize", F, "uint8 with scale and zero point from the data's range widened to hold 0 "
                            + "(ONNX DynamicQuantizeLinear); outputs q, scale, zero point")
                    .samples((r, t) -> List.of(
                            new Sample("mixed signs [7, 9]", null, Gen.ur(r, DType.FLOAT32, -3, 5, 7, 9).float32()),
                            new Sample("positive, transposed view [6, 5]", null, Gen.ur(r, DType.FLOAT32, 0.5, 4, 6, 5).float32().view()),
                            new Sample("negative [11]", null, Gen.ur(r, DType.FLOAT32, -6, -1, 11).float32()),
                            new Sample("mixed signs [130, 257]: several blocks of the flat AVX-512 passes", null,
                                    Gen.ur(r, DType.FLOAT32, -2, 7, 130, 257).float32()),
                            new Sample("empty [0]", null, Gen.ur(r, DType.FLOAT32, -1, 1, 0).float32())))
                    .reference((s, in) -> QuantizationReference.dynamic(in[0]))
                    .dtype(DType.FLOAT64, 0, 0).dtype(DType.FLOAT32, 0, 0)
                    .notDifferentiable("uint8 result")
                    .build(),
            OpInfo.of("qgemm_pack", F, "packs int8 b [k, n] once into blocks of 16 columns x 4 k (the vpdpbusd / dp4a "
                            + "operand), padded to k % 4 == 0 and n % 32 == 0; outputs the packed bytes and the column sums")
                    .samples((r, t) -> List.of(
                            new Sample("[7, 5]", null, ints(r, DType.INT8, -128, 127, 7, 5)),
                            new Sample("[9, 40], transposed view", null, ints(r, DType.INT8, -128, 127, 9, 40).view()),
                            new Sample("[4, 32]", null, ints(r, DType.INT8, -128, 127, 4, 32)),
                            new Sample("[1, 1]", null, ints(r, DType.INT8, -128, 127, 1, 1)),
                            new Sample("[0, 3]", null, ints(r, DType.INT8, -128, 127, 0, 3))))
                    .reference((s, in) -> {
                        long[] d = s.dims(0);
                        return QuantizationReference.packB(in[0], (int) d[0], (int) d[1]);
                    })
                    .dtype(DType.FLOAT64, 0, 0).dtype(DType.FLOAT32, 0, 0)
                    .notDifferentiable("integer data layout")
                    .build(),
            OpInfo.of("qgemm", F, "int8 GEMM: sum_k (a - za)(b - zb) exact in int32 (a uint8, b int8 packed), then "
                            + "per-column scale, bias, an activation (ReLU, GELU, SiLU); int32, float32, bfloat16, int8 or "
                            + "uint8 output")
                    .samples((r, t) -> List.of(
                            gemm(r, "int32 out, za 7, zb per column, [5, 7] x [7, 3]", 5, 7, 3, 7, true,
                                    Int8Gemm.Epilogue.int32(7), false, false),
                            gemm(r, "float32 out, scale, bias, relu, [9, 37] x [37, 45]", 9, 37, 45, 128, false,
                                    new Int8Gemm.Epilogue(128, DType.FLOAT32, Activation.RELU, 0), true, true),
                            gemm(r, "int8 out, zero point -3, [17, 300] x [300, 33] (two k blocks)", 17, 300, 33, 100, true,
                                    new Int8Gemm.Epilogue(100, DType.INT8, Activation.NONE, -3), true, true),
                            gemm(r, "uint8 out with relu, [3, 4] x [4, 70]", 3, 4, 70, 0, false,
                                    new Int8Gemm.Epilogue(0, DType.UINT8, Activation.RELU, 128), true, false),
                            gemm(r, "bfloat16 out with relu, [11, 40] x [40, 35]", 11, 40, 35, 90, true,
                                    new Int8Gemm.Epilogue(90, DType.BFLOAT16, Activation.RELU, 0), true, true),
                            gemm(r, "float32 out, bias, GELU, [10, 65] x [65, 50]", 10, 65, 50, 130, true,
                                    new Int8Gemm.Epilogue(130, DType.FLOAT32, Activation.GELU, 0), true, true),
                            gemm(r, "float32 out, SiLU, [4, 20] x [20, 17]", 4, 20, 17, 60, false,
                                    new Int8Gemm.Epilogue(60, DType.FLOAT32, Activation.SILU, 0), true, false),
                            gemm(r, "size 1 [1, 1] x [1, 1]", 1, 1, 1, 255, true, Int8Gemm.Epilogue.int32(255), false, false),
                            gemm(r, "k = 0", 2, 0, 3, 5, false, Int8Gemm.Epilogue.int32(5), false, false),
                            gemm(r, "m = 0", 0, 5, 3, 5, false, Int8Gemm.Epilogue.int32(5), false, false)))
                    .reference((s, in) -> {
                        Int8Gemm.Epilogue e = (Int8Gemm.Epilogue) s.attrs();
                        long[] ad = s.dims(0);
                        int m = (int) ad[0];
                        int k = (int) ad[1];
                        int n = (int) s.dims(2)[0];
                        double[] b = unpack(in[1], k, n);
                        return new double[][] {QuantizationReference.qgemm(in[0], b, m, k, n,
                                in.length > 3 ? in[3] : null, in.length > 4 ? in[4] : null, in.length > 5 ? in[5] : null, e)};
                    })
                    // integer outputs exact; float outputs within 1e-6 relative (1e-7 of the largest |value| for
                    // GELU's and SiLU's underflowing tails): GELU and SiLU are the kernels' float32 forms, a few ulp
                    // from the float64 functions. QuantizedGemmTest checks the other float epilogues bit for bit.
                    .dtype(DType.FLOAT64, 1e-6, 1e-7).dtype(DType.FLOAT32, 1e-6, 1e-7)
                    .notDifferentiable("integer inputs")
                    .build(),
            OpInfo.of("fake_quantize", F, "(clamp(rne(x / scale) + zero_point, qmin, qmax) - zero_point) * scale in x's "
                            + "dtype (quantization-aware training)")
                    .samples((r, t) -> fakeQuantSamples(r, t, false))
                    .reference((s, in) -> {
                        QuantScheme q = (QuantScheme) s.attrs();
                        double[] zp = in.length > 2 ? in[2] : null;
                        return new double[][] {QuantizationReference.dequantize(q, s.dims(0),
                                QuantizationReference.quantize(q, s.dims(0), in[0], in[1], zp), in[1], zp)};
                    })
                    .dtype(DType.FLOAT64, 0, 0).dtype(DType.FLOAT32, 0, 0).halves(8e-3, 1e-3)
                    .surrogateGradient("straight-through for x inside the grid, LSQ for the scale", (s, in, g) -> {
                        double[][] d = fakeQuantGrad((QuantScheme) s.attrs(), s.dims(0), g, in[0], in[1],
                                in.length > 2 ? in[2] : null);
                        double[] dscale = new double[in[1].length];
                        for (int i = 0; i < d[1].length; i++) {
                            dscale[QuantizationReference.paramIndex((QuantScheme) s.attrs(), s.dims(0), i)] += d[1][i];
                        }
                        return new double[][] {d[0], dscale, null};
                    })
                    .build(),
            OpInfo.of("fake_quantize_backward", F, "{dx, per-element scale gradient} of fake_quantize: dx = g inside the "
                            + "grid, else 0; LSQ's g (rne(v) - v), g (qmin - z) or g (qmax - z)")
                    .samples((r, t) -> fakeQuantSamples(r, t, true))
                    .reference((s, in) -> fakeQuantGrad((QuantScheme) s.attrs(), s.dims(1), in[0], in[1], in[2],
                            in.length > 3 ? in[3] : null))
                    .dtype(DType.FLOAT64, 0, 0).dtype(DType.FLOAT32, 0, 0).halves(0, 0)
                    .coveredBy("fake_quantize")
                    .build());

    /**
     * fake_quantize's samples (x, scale taking a gradient, zero point), with an output gradient g first
     * for its backward: grids of 8 and 4 bits (so that values fall inside, below and above), per
     * tensor, channel and group, a transposed view, no zero point, size-1 and empty dims.
     */
    private static List<Sample> fakeQuantSamples(Random r, DType t, boolean withGradient) {
        return List.of(
                fakeQuant(r, t, withGradient, "int8 per tensor [5, 7]", QuantScheme.perTensor(DType.INT8), false, true, 5, 7),
                fakeQuant(r, t, withGradient, "4-bit [-8, 7] per channel axis 0 [3, 9]",
                        QuantScheme.perChannel(DType.INT8, 0).withRange(-8, 7), false, true, 3, 9),
                fakeQuant(r, t, withGradient, "uint8 per group 3 along axis 1, transposed view [4, 6]",
                        QuantScheme.perGroup(DType.UINT8, 1, 3), true, true, 4, 6),
                fakeQuant(r, t, withGradient, "symmetric [-7, 7], no zero point, per channel axis 2 [2, 3, 5]",
                        QuantScheme.perChannel(DType.INT8, 2).withRange(-7, 7), false, false, 2, 3, 5),
                fakeQuant(r, t, withGradient, "size-1 [1, 1]", QuantScheme.perChannel(DType.INT8, 1), false, true, 1, 1),
                fakeQuant(r, t, withGradient, "empty [0, 3]", QuantScheme.perChannel(DType.INT8, 1), false, true, 0, 3));
    }

    private static Sample fakeQuant(Random r, DType t, boolean withGradient, String label, QuantScheme s, boolean view,
                                    boolean zeroPoint, long... dims) {
        long[] pd = paramDims(s, dims);
        int np = Gen.prod(pd);
        double[] scale = new double[np];
        long[] zp = new long[np];
        for (int i = 0; i < np; i++) {
            scale[i] = (float) (0.05 + 0.1 * r.nextDouble());
            zp[i] = zeroPoint ? s.qmin() + (long) ((0.3 + 0.4 * r.nextDouble()) * (s.qmax() - s.qmin())) : 0;
        }
        double span = 0.08 * (s.qmax() - s.qmin()) + 0.1;  // about a third of the values clip
        Arg x = Gen.ur(r, t, -span, span, dims);
        if (view) {
            x = x.view();
        }
        Arg sc = new Arg(scale, pd, DType.FLOAT32, false, true, true);  // float32, takes the LSQ gradient
        List<Arg> args = new java.util.ArrayList<>();
        if (withGradient) {
            args.add(Gen.ur(r, t, -1, 1, dims).noGrad());
        }
        args.add(x);
        args.add(sc);
        if (zeroPoint) {
            args.add(Arg.int32(zp, pd));
        }
        return new Sample(label, s, args.toArray(Arg[]::new));
    }

    /** {dx, per-element scale gradient} of fake quantization in float32 arithmetic, as quant.h states it. */
    static double[][] fakeQuantGrad(QuantScheme s, long[] dims, double[] g, double[] x, double[] scale, double[] zp) {
        double[] dx = new double[x.length];
        double[] ds = new double[x.length];
        for (int i = 0; i < x.length; i++) {
            int p = QuantizationReference.paramIndex(s, dims, i);
            long z = zp == null ? 0 : (long) zp[p];
            float gf = (float) g[i];
            float v = (float) x[i] / (float) scale[p];
            float rv = (float) Math.rint(v);
            float lo = s.qmin() - z;
            float hi = s.qmax() - z;
            if (rv < lo) {
                ds[i] = gf * lo;
            } else if (rv > hi) {
                ds[i] = gf * hi;
            } else {
                dx[i] = gf;
                ds[i] = gf * (rv - v);
            }
        }
        return new double[][] {dx, ds};
    }

    /** Integers uniform in [lo, hi] as a fixed-dtype input. */
    static Arg ints(Random r, DType t, int lo, int hi, long... dims) {
        double[] v = new double[Gen.prod(dims)];
        for (int i = 0; i < v.length; i++) {
            v[i] = lo + r.nextInt(hi - lo + 1);
        }
        return new Arg(v, dims, t, false, false, true);
    }

    /** b [k, n] back from the packed bytes (the reference computes from the plain matrix). */
    private static double[] unpack(double[] packed, int k, int n) {
        int kp = (k + 3) / 4 * 4;
        double[] b = new double[k * n];
        for (int kk = 0; kk < k; kk++) {
            for (int j = 0; j < n; j++) {
                b[kk * n + j] = packed[((j / 16) * (kp / 4) + kk / 4) * 64 + (j % 16) * 4 + kk % 4];
            }
        }
        return b;
    }

    /** a uint8 [m, k], b int8 [k, n] packed by the reference, optional zero points / scale / bias. */
    private static Sample gemm(Random r, String label, int m, int k, int n, int za, boolean zb, Int8Gemm.Epilogue e,
                               boolean scale, boolean bias) {
        Arg a = ints(r, DType.UINT8, 0, 255, m, k);
        double[] b = ints(r, DType.INT8, -128, 127, k, n).values();
        double[][] p = QuantizationReference.packB(b, k, n);
        java.util.List<Arg> args = new java.util.ArrayList<>(List.of(a,
                new Arg(p[0], new long[] {p[0].length}, DType.INT8, false, false, true),
                Arg.int32(longs(p[1]), n)));
        args.add(zb ? ints(r, DType.INT32, -20, 20, n) : null);
        if (scale || bias) {
            double[] sc = new double[n];
            for (int j = 0; j < n; j++) {
                sc[j] = (float) ((e.out() == DType.FLOAT32 || e.out() == DType.BFLOAT16 ? 1e-4 : 1e-5) * (0.5 + r.nextDouble()));
            }
            args.add(Arg.of(sc, DType.FLOAT32, n).float32());
        }
        if (bias) {
            args.add(Gen.ur(r, DType.FLOAT32, -20, 20, n).float32());
        }
        return new Sample(label, e, args.toArray(Arg[]::new));
    }

    private static long[] longs(double[] v) {
        long[] o = new long[v.length];
        for (int i = 0; i < v.length; i++) {
            o[i] = (long) v[i];
        }
        return o;
    }

    /** x uniform over about 1.3x the representable range (so some values clip), random parameters. */
    private static Sample quantize(Random r, DType t, String label, QuantScheme s, boolean view, long... dims) {
        long[] pd = paramDims(s, dims);
        int np = Gen.prod(pd);
        double[] scale = new double[np];
        long[] zp = new long[np];
        for (int i = 0; i < np; i++) {
            scale[i] = (float) (0.01 + 0.1 * r.nextDouble());
            zp[i] = s.isFloat8() ? 0 : s.qmin() + (long) (r.nextDouble() * (Math.min(s.qmax(), 1 << 20) - s.qmin()) * 0.5
                    + 0.25 * (Math.min(s.qmax(), 1 << 20) - s.qmin()));
        }
        double span = s.isFloat8() ? (s.storage() == DType.FLOAT8_E4M3 ? 600 : 70000) * 0.12 : (s.qmax() - s.qmin()) * 0.11 * 1.3;
        Arg x = Gen.ur(r, t, -span, span, dims);
        Arg sc = Arg.of(scale, DType.FLOAT32, pd).float32();
        if (view) {
            x = x.view();
        }
        return s.isFloat8() ? new Sample(label, s, x, sc) : new Sample(label, s, x, sc, Arg.int32(zp, pd));
    }

    private static Sample dequantize(Random r, String label, QuantScheme s, boolean view, long... dims) {
        long[] pd = paramDims(s, dims);
        int np = Gen.prod(pd);
        double[] scale = new double[np];
        long[] zp = new long[np];
        long lo = Math.max(s.qmin(), -1000), hi = Math.min(s.qmax(), 1000);
        for (int i = 0; i < np; i++) {
            scale[i] = (float) (0.01 + 0.1 * r.nextDouble());
            zp[i] = lo + (long) (r.nextDouble() * (hi - lo));
        }
        double[] q = new double[Gen.prod(dims)];
        for (int i = 0; i < q.length; i++) {
            q[i] = lo + Math.floor(r.nextDouble() * (hi - lo + 1));
        }
        Arg qa = new Arg(q, dims, s.storage(), false, false, true);
        if (view) {
            qa = qa.view();
        }
        return new Sample(label, s, qa, Arg.of(scale, DType.FLOAT32, pd).float32(), Arg.int32(zp, pd));
    }

    private static Sample requantize(Random r, String label, QuantScheme in, QuantScheme out, long... dims) {
        Sample a = dequantize(r, label, in, false, dims);
        long[] pd = paramDims(out, dims);
        int np = Gen.prod(pd);
        double[] scale = new double[np];
        long[] zp = new long[np];
        for (int i = 0; i < np; i++) {
            scale[i] = (float) (0.5 + 2 * r.nextDouble());
            zp[i] = out.qmin() + (long) (r.nextDouble() * (out.qmax() - out.qmin()));
        }
        Arg[] args = {a.args()[0], a.args()[1], a.args()[2], Arg.of(scale, DType.FLOAT32, pd).float32(), Arg.int32(zp, pd)};
        return new Sample(label, new Quantization.Requant(in, out), args);
    }

    static long[] paramDims(QuantScheme s, long[] dims) {
        return s.paramShape("sample", dev.cortado.tensor.Shape.of(dims)).toArray();
    }
}
