package dev.cortado.ops.opinfo;

import static dev.cortado.ops.opinfo.Gen.u;

import dev.cortado.ops.Convolution;
import dev.cortado.ops.Convolution.Activation;
import dev.cortado.ops.Convolution.Algorithm;
import dev.cortado.ops.Convolution.PrepackedAttrs;
import dev.cortado.ops.Convolution.BackwardDataAttrs;
import dev.cortado.ops.Convolution.BackwardWeightAttrs;
import dev.cortado.ops.Convolution.ConvAttrs;
import dev.cortado.ops.Convolution.ConvOptions;
import dev.cortado.ops.ConvolutionOpsTest;
import dev.cortado.ops.ConvolutionOpsTest.Case;
import dev.cortado.ops.DataLayout;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Convolution, transposed convolution and the two backward ops, NCHW with the default algorithm
 * choice (the algorithm x layout x dtype grid: ConvolutionOpsTest, whose float64 references
 * these are). Geometries: odd 2-d with bias, grouped with stride and asymmetric padding on a
 * transposed view, depthwise, 1-d dilated, 3-d. float32 tolerance 1e-4 of the output's
 * magnitude on the CPU (Winograd, im2col); on CUDA float32 runs on TF32 tensor cores (10-bit
 * mantissa inputs: 4e-3, as CudaConvTest) and bfloat16/float16 are added (CUDA-only dtypes).
 */
final class ConvolutionSamples {
    private ConvolutionSamples() {
    }

    private static final String F = "convolution";

    /** Geometries whose transposed convolution gives back exactly the input size. */
    static final List<Case> CASES = List.of(
            ConvolutionOpsTest.c2("2-d 3x3 pad 1 odd", 1, 3, 4, 1, 7, 9, 3, 3, 1, 1, 1, 1),
            ConvolutionOpsTest.c2("2-d groups 2 stride 2 pad 2/0", 2, 4, 6, 2, 9, 9, 3, 3, 2, 1, 2, 0),
            ConvolutionOpsTest.c2("2-d depthwise", 1, 3, 3, 3, 5, 6, 3, 3, 1, 1, 1, 1),
            new Case("1-d dilation 2", 1, 2, 3, 2, 1, new int[] {1, 1, 11}, new int[] {1, 1, 3}, new int[] {1, 1, 1},
                    new int[] {1, 1, 2}, new int[] {0, 0, 2}, new int[] {0, 0, 2}),
            new Case("3-d", 3, 1, 2, 3, 1, new int[] {4, 5, 3}, new int[] {2, 3, 2}, new int[] {1, 1, 1},
                    new int[] {1, 1, 1}, new int[] {0, 1, 1}, new int[] {0, 1, 0}));

    /** DIRECT_NHWC geometries (NHWC, not a plain 1x1, at least 8 output channels per group): odd, grouped, partial blocks. */
    static final List<Case> PREPACKED = List.of(
            ConvolutionOpsTest.c2("prepacked 3x3 s2 pad 1, 3->10", 2, 3, 10, 1, 9, 7, 3, 3, 2, 1, 1, 1),
            ConvolutionOpsTest.c2("prepacked 5x5 groups 2 pad 2/1, 4->33", 1, 4, 33 + 1, 2, 6, 8, 5, 5, 1, 1, 2, 1),
            ConvolutionOpsTest.c2("prepacked 1x1 s2, 5->9", 1, 5, 9, 1, 5, 5, 1, 1, 2, 1, 0, 0));

    static final List<OpInfo> ENTRIES = List.of(
            OpInfo.of("conv", F, "N-d convolution (stride, padding, dilation, groups, bias, fused activation), NCHW or NHWC")
                    .samples((r, t) -> each((c, i) -> {
                        Arg x = u(r, t, xDims(c));
                        Arg w = u(r, t, wDims(c));
                        return i % 2 == 0 ? new Sample(c.name(), new ConvAttrs(c.spatial(), options(c)), x, w, u(r, t, c.k()))
                                : new Sample(c.name() + ", view", new ConvAttrs(c.spatial(), options(c)), x.view(), w);
                    }))
                    .reference((s, in) -> new double[][] {ConvolutionOpsTest.refForward(caseOf(s), in[0], in[1],
                            in.length > 2 ? in[2] : null, Activation.NONE, false)})
                    .floats(1e-4).cuda(DType.FLOAT32, 4e-3, 1e-3).cuda(DType.BFLOAT16, 1.6e-2, 4e-3)
                    .cuda(DType.FLOAT16, 4e-3, 1e-3).gradCheck().build(),
            OpInfo.of("conv_transpose", F, "transposed convolution (the backward-data of a convolution), with bias")
                    .samples((r, t) -> each((c, i) -> new Sample(c.name(), new ConvAttrs(c.spatial(), options(c)),
                            u(r, t, yDims(c)), u(r, t, wDims(c)), u(r, t, c.c()))))
                    .reference((s, in) -> {
                        Case c = caseOf(s);
                        double[] y = ConvolutionOpsTest.refBackwardData(c, in[0], in[1], false);
                        int vol = y.length / (c.n() * c.c());
                        for (int i = 0; i < y.length; i++) {
                            y[i] += in[2][(i / vol) % c.c()];
                        }
                        return new double[][] {y};
                    })
                    .floats(1e-4).cuda(DType.FLOAT32, 4e-3, 1e-3).cuda(DType.BFLOAT16, 1.6e-2, 4e-3)
                    .cuda(DType.FLOAT16, 4e-3, 1e-3).gradCheck().build(),
            OpInfo.of("conv_backward_data", F, "dx of conv from dy and the weight")
                    .samples((r, t) -> each((c, i) -> new Sample(c.name(),
                            new BackwardDataAttrs(c.spatial(), options(c), tail(c, c.in())), u(r, t, yDims(c)), u(r, t, wDims(c)))))
                    .reference((s, in) -> new double[][] {ConvolutionOpsTest.refBackwardData(caseOf(s), in[0], in[1], false)})
                    .floats(1e-4).cuda(DType.FLOAT32, 4e-3, 1e-3).cuda(DType.BFLOAT16, 1.6e-2, 4e-3)
                    .cuda(DType.FLOAT16, 4e-3, 1e-3).coveredBy("conv").build(),
            OpInfo.of("conv_backward_weight", F, "{dweight, dbias} of conv from x and dy")
                    .samples((r, t) -> each((c, i) -> new Sample(c.name(),
                            new BackwardWeightAttrs(c.spatial(), options(c), tail(c, c.ks()), true), u(r, t, xDims(c)),
                            u(r, t, yDims(c)))))
                    .reference((s, in) -> {
                        Case c = caseOf(s);
                        double[] wb = ConvolutionOpsTest.refBackwardWeight(c, in[0], in[1], false);
                        int nw = wb.length - c.k();
                        return new double[][] {Arrays.copyOf(wb, nw), Arrays.copyOfRange(wb, nw, wb.length)};
                    })
                    .floats(1e-4).cuda(DType.FLOAT32, 4e-3, 1e-3).cuda(DType.BFLOAT16, 1.6e-2, 4e-3)
                    .cuda(DType.FLOAT16, 4e-3, 1e-3).coveredBy("conv").build(),
            OpInfo.of("conv_prepacked", F, "conv on a weight packed once (Convolution.packWeight; CPU float32 inference)")
                    .samples((r, t) -> PREPACKED.stream().map(c -> {
                        Arg x = u(r, t, nhwcDims(c, c.c(), c.in()));
                        Arg w = u(r, t, wDims(c));
                        double[] packed;
                        try (Tensor wt = Tensor.of(toFloats(w.values()), wDims(c));
                             Tensor probe = Tensor.empty(DType.FLOAT32, Device.CPU, nhwcDims(c, c.c(), c.in()));
                             Tensor p = Convolution.packWeight(probe, wt, c.spatial(), nhwc(c))) {
                            packed = p.toDoubleArray(); // DIRECT_NHWC here: a permutation of the weight, after a header
                        }
                        Arg pk = Arg.of(packed, DType.FLOAT32, packed.length).float32();
                        PrepackedAttrs a = new PrepackedAttrs(c.spatial(), nhwc(c), wDims(c));
                        return c.k() % 2 == 0 ? new Sample(c.name(), a, x, pk, u(r, t, c.k()))
                                : new Sample(c.name() + ", view", a, x.view(), pk);
                    }).toList())
                    .reference((s, in) -> {
                        Case c = PREPACKED.stream().filter(k -> s.label().startsWith(k.name())).findFirst().orElseThrow();
                        int n = c.n();
                        double[] x = ConvolutionOpsTest.fromLayout(in[0], n, c.c(), c.inVol(), DataLayout.NHWC);
                        double[] y = ConvolutionOpsTest.refForward(c, x, unpackDirect(c, in[1]), in.length > 2 ? in[2] : null,
                                Activation.NONE, false);
                        return new double[][] {ConvolutionOpsTest.toLayout(y, n, c.k(), c.outVol(), DataLayout.NHWC)};
                    })
                    .dtype(DType.FLOAT32, 1e-4, 1e-4)
                    .notDifferentiable("inference only: the weight is a packed constant (a graph with frozen parameters)")
                    .build());

    static ConvOptions nhwc(Case c) {
        return ConvOptions.builder().stride(tail(c, c.st())).dilation(tail(c, c.dil())).padding(tail(c, c.pb()), tail(c, c.pa()))
                .groups(c.groups()).layout(DataLayout.NHWC).algorithm(Algorithm.DIRECT_NHWC).build();
    }

    static long[] nhwcDims(Case c, int ch, int[] sp) {
        return c.actDims(DataLayout.NHWC, ch, sp);
    }

    static float[] toFloats(double[] v) {
        float[] f = new float[v.length];
        for (int i = 0; i < v.length; i++) {
            f[i] = (float) v[i];
        }
        return f;
    }

    /**
     * The weight [K][Cg][taps] back from a DIRECT_NHWC packed buffer: a 16-float header whose word 6
     * is the block width KB, then [group][K block][tap][c][KB].
     */
    static double[] unpackDirect(Case c, double[] packed) {
        int kb = Float.floatToRawIntBits((float) packed[6]);
        int g = c.groups();
        int kg = c.k() / g;
        int cg = c.c() / g;
        int taps = c.kVol();
        int nkb = (kg + kb - 1) / kb;
        double[] w = new double[c.k() * cg * taps];
        for (int grp = 0; grp < g; grp++) {
            for (int kk = 0; kk < kg; kk++) {
                for (int ch = 0; ch < cg; ch++) {
                    for (int t = 0; t < taps; t++) {
                        w[((grp * kg + kk) * cg + ch) * taps + t] =
                                packed[16 + (((grp * nkb + kk / kb) * taps + t) * cg + ch) * kb + kk % kb];
                    }
                }
            }
        }
        return w;
    }

    interface PerCase {
        Sample make(Case c, int index);
    }

    static List<Sample> each(PerCase f) {
        List<Sample> out = new ArrayList<>();
        for (int i = 0; i < CASES.size(); i++) {
            out.add(f.make(CASES.get(i), i));
        }
        return out;
    }

    static Case caseOf(Sample s) {
        return CASES.stream().filter(c -> s.label().startsWith(c.name())).findFirst().orElseThrow();
    }

    static long[] tail(Case c, int[] a) {
        long[] r = new long[c.spatial()];
        for (int i = 0; i < r.length; i++) {
            r[i] = a[3 - c.spatial() + i];
        }
        return r;
    }

    static ConvOptions options(Case c) {
        return ConvOptions.builder().stride(tail(c, c.st())).dilation(tail(c, c.dil())).padding(tail(c, c.pb()), tail(c, c.pa()))
                .groups(c.groups()).build();
    }

    static long[] dims(Case c, int ch, long[] spatial) {
        long[] d = new long[spatial.length + 2];
        d[0] = c.n();
        d[1] = ch;
        System.arraycopy(spatial, 0, d, 2, spatial.length);
        return d;
    }

    static long[] xDims(Case c) {
        return dims(c, c.c(), tail(c, c.in()));
    }

    static long[] yDims(Case c) {
        int[] o = new int[3];
        for (int i = 0; i < 3; i++) {
            o[i] = (c.in()[i] + c.pb()[i] + c.pa()[i] - c.dil()[i] * (c.ks()[i] - 1) - 1) / c.st()[i] + 1;
        }
        return dims(c, c.k(), tail(c, o));
    }

    static long[] wDims(Case c) {
        long[] d = new long[c.spatial() + 2];
        d[0] = c.k();
        d[1] = c.c() / c.groups();
        System.arraycopy(tail(c, c.ks()), 0, d, 2, c.spatial());
        return d;
    }
}
