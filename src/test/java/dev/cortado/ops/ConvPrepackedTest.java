package dev.cortado.ops;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.ops.Convolution.Activation;
import dev.cortado.ops.Convolution.Algorithm;
import dev.cortado.ops.Convolution.ConvOptions;
import dev.cortado.ops.ConvolutionOpsTest.Case;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * {@code conv_prepacked}: a weight packed once by {@link Convolution#packWeight} gives the same
 * numbers as {@code conv} packing it at every call (the same kernel on the same packed values:
 * bit for bit) and the float64 reference (float32: 1e-4 of the sum of |x w|), for DIRECT_NHWC and
 * Winograd, with and without bias, every fused activation, odd sizes, groups, partial channel
 * blocks, other batch and image sizes than the one it was packed for, and an empty batch; the
 * algorithms without a packed layout get none; a packed buffer that does not fit the call is a
 * clear exception, never a crash.
 */
class ConvPrepackedTest {

    private static final List<Case> CASES = List.of(
            ConvolutionOpsTest.c2("3x3 pad1 odd, 18->20", 2, 18, 20, 1, 7, 9, 3, 3, 1, 1, 1, 1),
            ConvolutionOpsTest.c2("3x3 64->96 (partial block)", 1, 64, 96, 1, 9, 8, 3, 3, 1, 1, 1, 1),
            ConvolutionOpsTest.c2("3x3 groups2 64->64 pad 2/0", 1, 64, 64, 2, 7, 6, 3, 3, 1, 1, 2, 0),
            ConvolutionOpsTest.c2("5x5 s2 pad2, 8->40", 2, 8, 40, 1, 11, 10, 5, 5, 2, 1, 2, 2),
            ConvolutionOpsTest.c2("3x3 s2 groups2 asym pad 2/0, 16->34", 1, 16, 34, 2, 9, 8, 3, 3, 2, 1, 2, 0),
            ConvolutionOpsTest.c2("1x1 s2, 12->33", 2, 12, 33, 1, 6, 7, 1, 1, 2, 1, 0, 0));

    private static Tensor prepacked(Case c, ConvOptions o, Tensor x, Tensor packed, Tensor bias, long[] wDims) {
        return Convolution.CONV_PREPACKED_OP.call(new Convolution.PrepackedAttrs(c.spatial(), o, wDims), x, packed, bias);
    }

    @Test
    void prepackedMatchesConvAndTheReference() {
        Activation[] acts = Activation.values();
        int seed = 0;
        int packedRuns = 0;
        for (Case c : CASES) {
            for (DataLayout l : DataLayout.values()) {
                for (Algorithm a : new Algorithm[] {Algorithm.AUTO, Algorithm.WINOGRAD, Algorithm.DIRECT_NHWC}) {
                    if (!ConvolutionOpsTest.applies(a, c, l, DType.FLOAT32, 0)) {
                        continue;
                    }
                    seed++;
                    boolean withBias = seed % 2 == 0;
                    Activation act = acts[seed % acts.length];
                    String what = c + " " + l + " " + a + " " + act + (withBias ? " bias" : "");
                    try (Scope s = Scope.open()) {
                        Random r = new Random(seed);
                        double[] w = ConvolutionOpsTest.rounded(ConvolutionOpsTest.rand(r, c.k() * c.cg() * c.kVol()),
                                DType.FLOAT32);
                        double[] b = withBias ? ConvolutionOpsTest.rounded(ConvolutionOpsTest.rand(r, c.k()), DType.FLOAT32)
                                : null;
                        Tensor wt = ConvolutionOpsTest.tensor(w, DType.FLOAT32, c.wDims());
                        Tensor bt = withBias ? ConvolutionOpsTest.tensor(b, DType.FLOAT32, c.k()) : null;
                        ConvOptions o = c.options().layout(l).algorithm(a).activation(act).build();
                        // packed for an empty batch: only channels and image size matter
                        long[] probe = c.actDims(l, c.c(), c.in());
                        probe[0] = 0;
                        Tensor packed = Convolution.packWeight(Tensor.empty(DType.FLOAT32, Device.CPU, probe), wt,
                                c.spatial(), o);
                        if (a != Algorithm.AUTO) {
                            assertNotNull(packed, what + ": " + a + " has a packed layout");
                        }
                        if (packed == null) {
                            continue; // AUTO chose im2col here
                        }
                        for (int n : new int[] {c.n(), 3}) { // the batch it was probed with, and another
                            Case cn = new Case(c.name(), c.spatial(), n, c.c(), c.k(), c.groups(), c.in(), c.ks(), c.st(),
                                    c.dil(), c.pb(), c.pa());
                            double[] x = ConvolutionOpsTest.rounded(ConvolutionOpsTest.rand(r, n * c.c() * c.inVol()),
                                    DType.FLOAT32);
                            Tensor xt = ConvolutionOpsTest.tensor(ConvolutionOpsTest.toLayout(x, n, c.c(), c.inVol(), l),
                                    DType.FLOAT32, cn.actDims(l, c.c(), c.in()));
                            Tensor want = Convolution.CONV_OP.call(new Convolution.ConvAttrs(c.spatial(), o), xt, wt, bt);
                            Tensor got = prepacked(c, o, xt, packed, bt, c.wDims());
                            assertArrayEquals(want.dims(), got.dims(), what + ": shape");
                            assertArrayEquals(want.toDoubleArray(), got.toDoubleArray(), what + ", batch " + n
                                    + ": the packed weight gives conv's numbers");
                            double[] ref = ConvolutionOpsTest.refForward(cn, x, w, b, act, false);
                            double[] scale = ConvolutionOpsTest.refForward(cn, x, w, b, act, true);
                            ConvolutionOpsTest.assertNear(what + ", batch " + n + " against float64",
                                    ConvolutionOpsTest.fromLayout(got.toDoubleArray(), n, c.k(), c.outVol(), l), ref, scale,
                                    1e-4);
                            packedRuns++;
                        }
                        long[] empty = c.actDims(l, c.c(), c.in());
                        empty[0] = 0;
                        Tensor none = prepacked(c, o, Tensor.empty(DType.FLOAT32, Device.CPU, empty), packed, bt, c.wDims());
                        assertEquals(0, none.numel(), what + ": an empty batch");
                    }
                }
            }
        }
        assertTrue(packedRuns >= 30, "packed runs: " + packedRuns);
    }

    @Test
    void theAlgorithmsWithoutAPackedLayoutGetNone() {
        try (Scope s = Scope.open()) {
            Tensor x = Tensor.empty(DType.FLOAT32, Device.CPU, 0, 8, 8, 16);
            Tensor w = Generator.seeded(3).normal(0, 1, DType.FLOAT32, Device.CPU, 32, 16, 3, 3);
            ConvOptions nhwc = ConvOptions.builder().padding(1).layout(DataLayout.NHWC).build();
            assertNotNull(Convolution.packWeight(x, w, 2, nhwc), "AUTO runs Winograd here");
            assertNull(Convolution.packWeight(x, w, 2,
                    ConvOptions.builder().padding(1).layout(DataLayout.NHWC).algorithm(Algorithm.IM2COL_GEMM).build()));
            assertNull(Convolution.packWeight(x, w, 2,
                    ConvOptions.builder().padding(1).layout(DataLayout.NHWC).algorithm(Algorithm.AUTOTUNE).build()),
                    "AUTOTUNE's choice is made at run time");
            assertNull(Convolution.packWeight(x.to(DType.FLOAT64), w.to(DType.FLOAT64), 2, nhwc), "float64");
            Tensor dw = Generator.seeded(4).normal(0, 1, DType.FLOAT32, Device.CPU, 16, 1, 3, 3);
            assertNull(Convolution.packWeight(x, dw, 2, ConvOptions.builder().padding(1).groups(16)
                    .layout(DataLayout.NHWC).build()), "depthwise");
        }
    }

    @Test
    void aPackedWeightThatDoesNotFitTheCallIsRefused() {
        try (Scope s = Scope.open()) {
            Generator gen = Generator.seeded(5);
            ConvOptions o = ConvOptions.builder().padding(1).layout(DataLayout.NHWC).algorithm(Algorithm.WINOGRAD).build();
            Tensor x = gen.normal(0, 1, DType.FLOAT32, Device.CPU, 1, 6, 6, 16);
            Tensor w = gen.normal(0, 1, DType.FLOAT32, Device.CPU, 32, 16, 3, 3);
            Tensor packed = Convolution.packWeight(x, w, 2, o);
            Case c = ConvolutionOpsTest.c2("refused", 1, 16, 32, 1, 6, 6, 3, 3, 1, 1, 1, 1);
            // the attributes claim another weight shape than the one packed
            RuntimeException e = assertThrows(RuntimeException.class,
                    () -> prepacked(c, o, gen.normal(0, 1, DType.FLOAT32, Device.CPU, 1, 6, 6, 16), packed, null,
                            new long[] {48, 16, 3, 3}));
            assertTrue(e.getMessage().contains("conv_forward_packed") && e.getMessage().contains("packed is for"),
                    e.getMessage());
            // cut short
            Tensor cut = packed.narrow(0, 0, packed.size(0) - 7).contiguous();
            e = assertThrows(RuntimeException.class, () -> prepacked(c, o, x, cut, null, w.dims()));
            assertTrue(e.getMessage().contains("packed is for"), e.getMessage());
            // not a packed weight at all
            Tensor noise = gen.normal(0, 1, DType.FLOAT32, Device.CPU, packed.size(0));
            e = assertThrows(RuntimeException.class, () -> prepacked(c, o, x, noise, null, w.dims()));
            assertTrue(e.getMessage().contains("not a packed convolution weight"), e.getMessage());
            // a 2-d tensor, or float64
            e = assertThrows(RuntimeException.class, () -> prepacked(c, o, x, packed.reshape(1, -1), null, w.dims()));
            assertTrue(e.getMessage().contains("conv_prepacked") && e.getMessage().contains("packed_weight"), e.getMessage());
            e = assertThrows(RuntimeException.class, () -> prepacked(c, o, x.to(DType.FLOAT64), packed, null, w.dims()));
            assertTrue(e.getMessage().contains("conv_prepacked") && e.getMessage().contains("float32"), e.getMessage());
        }
    }
}
