package dev.cortado.ops.opinfo;

import dev.cortado.quant.Int8Conv;
import dev.cortado.ops.Convolution.Activation;
import dev.cortado.quant.Int8Gemm;
import dev.cortado.quant.QuantizationReference;
import dev.cortado.tensor.DType;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;

/**
 * The int8 convolution (dev.cortado.quant.Int8Conv, NHWC): the reference sums
 * {@code (x - zx)(w - zw)} one product at a time in int64 over the in-image taps (the filters
 * unpacked from the packed bytes the sample holds), then applies the GEMM's epilogue
 * (QuantizationReference.epilogue: the float32 fma, ReLU, bfloat16 rounding to nearest even, or
 * round half to even and saturation). Integer outputs must match exactly and so must float32 and
 * bfloat16 ones (tolerance 0: the kernels compute the same float32 operations on the same exact
 * int32 sums; GELU and SiLU, a few ulp from float64, are QuantizationSamples' qgemm's). Samples: 3x3 with padding, asymmetric padding
 * with stride and dilation on a 3x2 kernel, groups, depthwise (the direct kernel) with and
 * without a channel multiplier, a reduction of two k blocks, more rows than one GEMM chunk
 * (4096), a non-contiguous x, size 1 and an empty batch.
 */
final class QuantConvSamples {
    private QuantConvSamples() {
    }

    private static final String F = "quantization";

    static final List<OpInfo> ENTRIES = List.of(
            OpInfo.of("qconv2d", F, "int8 convolution NHWC: sum (x - zx)(w - zw) over each patch, exact in int32 (x uint8, "
                            + "filters int8 packed per group), stride, padding, dilation, groups, depthwise; the int8 GEMM's "
                            + "epilogue (per-channel scale, bias, ReLU; int32, float32, int8 or uint8 output)")
                    .samples((r, t) -> List.of(
                            conv(r, "3x3 pad 1, float32 out with bias and relu, zw per channel", 2, 7, 6, 5,
                                    Int8Conv.Geometry.of(3, 1, 1, 1, 1, 7), new Int8Gemm.Epilogue(17, DType.FLOAT32, Activation.RELU, 0),
                                    true, true, true, false),
                            conv(r, "3x3 stride 2 pad 1, one input channel (a first layer: rows of taps copied as runs)",
                                    2, 9, 11, 1, Int8Conv.Geometry.of(3, 2, 1, 1, 1, 4),
                                    new Int8Gemm.Epilogue(5, DType.FLOAT32, Activation.RELU, 0), true, true, true, false),
                            conv(r, "3x2 stride 2/1, dilation 2/1, padding 1/0/2/1, int32 out", 1, 9, 8, 4,
                                    new Int8Conv.Geometry(3, 2, 2, 1, 1, 0, 2, 1, 2, 1, 1, 6), Int8Gemm.Epilogue.int32(200),
                                    true, false, false, false),
                            conv(r, "groups 2, int8 out zero point -5", 2, 5, 5, 6, Int8Conv.Geometry.of(3, 1, 1, 1, 2, 4),
                                    new Int8Gemm.Epilogue(128, DType.INT8, Activation.NONE, -5), false, true, true, false),
                            conv(r, "depthwise 9 channels, stride 2, uint8 out with relu", 2, 7, 7, 9,
                                    Int8Conv.Geometry.of(3, 2, 1, 1, 9, 9), new Int8Gemm.Epilogue(3, DType.UINT8, Activation.RELU, 10),
                                    true, true, true, false),
                            conv(r, "depthwise with channel multiplier 2 (grouped GEMM)", 1, 5, 6, 3,
                                    Int8Conv.Geometry.of(3, 1, 1, 2, 3, 6), new Int8Gemm.Epilogue(0, DType.FLOAT32, Activation.NONE, 0),
                                    true, true, false, false),
                            conv(r, "1x1, 300 channels (two k blocks), int32 out", 1, 3, 2, 300,
                                    Int8Conv.Geometry.of(1, 1, 0, 1, 1, 33), Int8Gemm.Epilogue.int32(255), true, false,
                                    false, false),
                            conv(r, "70x70 (4900 rows: two GEMM chunks), float32 out", 1, 70, 70, 3,
                                    Int8Conv.Geometry.of(3, 1, 1, 1, 1, 5), new Int8Gemm.Epilogue(50, DType.FLOAT32, Activation.NONE, 0),
                                    false, true, true, false),
                            conv(r, "non-contiguous x (transposed view), int32 out", 2, 4, 5, 3,
                                    Int8Conv.Geometry.of(2, 1, 0, 1, 1, 4), Int8Gemm.Epilogue.int32(9), true, false, false,
                                    true),
                            conv(r, "bfloat16 out with relu, 3x3 pad 1", 1, 6, 5, 8, Int8Conv.Geometry.of(3, 1, 1, 1, 1, 12),
                                    new Int8Gemm.Epilogue(40, DType.BFLOAT16, Activation.RELU, 0), true, true, true, false),
                            conv(r, "depthwise 5 channels, bfloat16 out", 1, 5, 5, 5, Int8Conv.Geometry.of(3, 1, 1, 1, 5, 5),
                                    new Int8Gemm.Epilogue(7, DType.BFLOAT16, Activation.NONE, 0), true, true, true, false),
                            conv(r, "size 1: 1x1x1x1, 1x1 kernel", 1, 1, 1, 1, Int8Conv.Geometry.of(1, 1, 0, 1, 1, 1),
                                    Int8Gemm.Epilogue.int32(1), true, false, false, false),
                            conv(r, "empty batch", 0, 4, 4, 2, Int8Conv.Geometry.of(3, 1, 1, 1, 1, 3),
                                    Int8Gemm.Epilogue.int32(1), false, false, false, false)))
                    .reference((s, in) -> new double[][] {reference((Int8Conv.Attrs) s.attrs(), s.dims(0), in)})
                    .dtype(DType.FLOAT64, 0, 0).dtype(DType.FLOAT32, 0, 0)
                    .notDifferentiable("integer inputs")
                    .build());

    /**
     * x uint8 [n, h, w, c], filters int8 [oc, c / groups, kh, kw] packed per group as the kernel
     * expects (by the reference packing), optional zero points / scale / bias.
     */
    private static Sample conv(Random r, String label, int n, int h, int w, int c, Int8Conv.Geometry g,
                               Int8Gemm.Epilogue e, boolean zw, boolean scale, boolean bias, boolean view) {
        int oc = (int) g.outChannels();
        int groups = (int) g.groups();
        int cg = c / groups;
        int og = oc / groups;
        int kh = (int) g.kh();
        int kw = (int) g.kw();
        int k = kh * kw * cg;
        Arg x = QuantizationSamples.ints(r, DType.UINT8, 0, 255, n, h, w, c);
        if (view) {
            x = x.view();
        }
        double[] filt = QuantizationSamples.ints(r, DType.INT8, -128, 127, oc, cg, kh, kw).values();
        List<Double> packed = new ArrayList<>();
        double[] colsum = new double[oc];
        for (int grp = 0; grp < groups; grp++) {
            double[] b = new double[k * og];  // B_g [k, og], k = (ky * kw + kx) * cg + ci
            for (int j = 0; j < og; j++) {
                for (int ci = 0; ci < cg; ci++) {
                    for (int ky = 0; ky < kh; ky++) {
                        for (int kx = 0; kx < kw; kx++) {
                            b[((ky * kw + kx) * cg + ci) * og + j] = filt[(((grp * og + j) * cg + ci) * kh + ky) * kw + kx];
                        }
                    }
                }
            }
            double[][] p = QuantizationReference.packB(b, k, og);
            for (double v : p[0]) {
                packed.add(v);
            }
            System.arraycopy(p[1], 0, colsum, grp * og, og);
        }
        double[] pk = packed.stream().mapToDouble(Double::doubleValue).toArray();
        long[] cs = new long[oc];
        for (int o = 0; o < oc; o++) {
            cs[o] = (long) colsum[o];
        }
        List<Arg> args = new ArrayList<>(List.of(x, new Arg(pk, new long[] {pk.length}, DType.INT8, false, false, true),
                Arg.int32(cs, oc)));
        args.add(zw ? QuantizationSamples.ints(r, DType.INT32, -20, 20, oc) : null);
        if (scale || bias) {
            double[] sc = new double[oc];
            for (int j = 0; j < oc; j++) {
                sc[j] = (float) ((e.out() == DType.FLOAT32 || e.out() == DType.BFLOAT16 ? 1e-4 : 1e-5) * (0.5 + r.nextDouble()));
            }
            args.add(Arg.of(sc, DType.FLOAT32, oc).float32());
        }
        if (bias) {
            args.add(Gen.ur(r, DType.FLOAT32, -20, 20, oc).float32());
        }
        return new Sample(label, new Int8Conv.Attrs(g, e), args.toArray(Arg[]::new));
    }

    /** The convolution from the packed filters, exact in int64, then the GEMM's epilogue. */
    static double[] reference(Int8Conv.Attrs at, long[] xd, double[][] in) {
        Int8Conv.Geometry g = at.geometry();
        Int8Gemm.Epilogue e = at.epilogue();
        int n = (int) xd[0];
        int h = (int) xd[1];
        int w = (int) xd[2];
        int c = (int) xd[3];
        int oc = (int) g.outChannels();
        int groups = (int) g.groups();
        int cg = c / groups;
        int og = oc / groups;
        int kh = (int) g.kh();
        int kw = (int) g.kw();
        int k = kh * kw * cg;
        int oh = (int) g.outHeight(h);
        int ow = (int) g.outWidth(w);
        int kp = (k + 3) / 4 * 4;
        int groupBytes = (og + 31) / 32 * 32 * kp;
        double[] x = in[0];
        double[] zw = in.length > 3 ? in[3] : null;
        double[] scale = in.length > 4 ? in[4] : null;
        double[] bias = in.length > 5 ? in[5] : null;
        double[] y = new double[n * oh * ow * oc];
        for (int b = 0; b < n; b++) {
            for (int oy = 0; oy < oh; oy++) {
                for (int ox = 0; ox < ow; ox++) {
                    for (int o = 0; o < oc; o++) {
                        int grp = o / og;
                        int j = o % og;
                        long zwo = zw == null ? 0 : (long) zw[o];
                        long s = 0;
                        for (int ky = 0; ky < kh; ky++) {
                            long iy = (long) oy * g.strideH() - g.padTop() + (long) ky * g.dilationH();
                            for (int kx = 0; kx < kw; kx++) {
                                long ix = (long) ox * g.strideW() - g.padLeft() + (long) kx * g.dilationW();
                                if (iy < 0 || iy >= h || ix < 0 || ix >= w) {
                                    continue;
                                }
                                for (int ci = 0; ci < cg; ci++) {
                                    int kk = (ky * kw + kx) * cg + ci;
                                    long wv = (long) in[1][grp * groupBytes + ((j / 16) * (kp / 4) + kk / 4) * 64
                                            + (j % 16) * 4 + kk % 4];
                                    long xv = (long) x[(int) (((b * (long) h + iy) * w + ix) * c + grp * cg + ci)];
                                    s += (xv - e.aZeroPoint()) * (wv - zwo);
                                }
                            }
                        }
                        y[((b * oh + oy) * ow + ox) * oc + o] = QuantizationReference.epilogue(s, scale == null ? 0 : scale[o], bias == null ? 0 : bias[o], e);
                    }
                }
            }
        }
        return y;
    }
}
