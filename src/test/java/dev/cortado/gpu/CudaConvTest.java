package dev.cortado.gpu;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.backend.cuda.CudaBackend;
import dev.cortado.ops.Convolution;
import dev.cortado.ops.Convolution.Activation;
import dev.cortado.ops.Convolution.Algorithm;
import dev.cortado.ops.Convolution.ConvOptions;
import dev.cortado.ops.DataLayout;
import dev.cortado.ops.Generator;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * CUDA convolutions (native/cuda/conv.cu) against the CPU REFERENCE algorithm in float64, on fresh
 * random inputs rounded to the tested dtype first (so both sides see the same operands). Run on a GPU
 * machine with {@code mvn verify -Pgpu}.
 *
 * <p>Tolerance per element: {@code r * |ref| + r * 0.25 * max|ref|} (the scale term covers results that
 * cancel to near zero). r: float32 4e-3 (IMPLICIT_GEMM rounds inputs to TF32, 10-bit mantissa: ~5e-4
 * relative per product, summed randomly), float32 with REFERENCE 1e-5, bfloat16 1.6e-2 (one rounding of
 * the float32-accumulated result to 8 bits: 2^-9 relative, plus TF32-free float32 accumulation), float16
 * 4e-3 (2^-12 rounding), float64 1e-10 (different summation order only).
 */
@Tag("gpu")
class CudaConvTest {
    private static final Device GPU = Device.cuda(0);

    @BeforeAll
    static void requireGpu() {
        Assumptions.assumeTrue(GPU.isAvailable(), () -> "no usable CUDA device: "
                + CudaBackend.instance().unavailableReason());
    }

    /** One geometry: spatial sizes, kernel, stride, dilation, padding per side, groups. */
    record Case(String name, long n, long c, long k, long[] in, long[] kernel, long[] stride, long[] dilation,
                long[] padBefore, long[] padAfter, long groups) {
        int spatial() {
            return in.length;
        }

        ConvOptions options(DataLayout layout, Algorithm algo, Activation act) {
            return ConvOptions.builder().stride(stride).dilation(dilation).padding(padBefore, padAfter).groups(groups)
                    .layout(layout).algorithm(algo).activation(act).build();
        }

        long[] xDims(DataLayout layout) {
            return act(layout, c, in);
        }

        long[] wDims() {
            long[] d = new long[spatial() + 2];
            d[0] = k;
            d[1] = c / groups;
            System.arraycopy(kernel, 0, d, 2, spatial());
            return d;
        }

        long[] act(DataLayout layout, long ch, long[] sp) {
            long[] d = new long[spatial() + 2];
            d[0] = n;
            for (int i = 0; i < spatial(); i++) {
                d[layout == DataLayout.NCHW ? 2 + i : 1 + i] = sp[i];
            }
            d[layout == DataLayout.NCHW ? 1 : spatial() + 1] = ch;
            return d;
        }

        @Override
        public String toString() {
            return name + " N" + n + " C" + c + " K" + k + " in " + Arrays.toString(in) + " k " + Arrays.toString(kernel)
                    + " s " + Arrays.toString(stride) + " d " + Arrays.toString(dilation) + " pad "
                    + Arrays.toString(padBefore) + "/" + Arrays.toString(padAfter) + " g " + groups;
        }
    }

    private static long[] l(long... v) {
        return v;
    }

    private static Case c2(String name, long n, long c, long k, long h, long w, long kh, long kw, long s, long d,
                           long[] pb, long[] pa, long g) {
        return new Case(name, n, c, k, l(h, w), l(kh, kw), l(s, s), l(d, d), pb, pa, g);
    }

    static List<Case> cases() {
        List<Case> r = new ArrayList<>();
        r.add(c2("3x3", 2, 16, 24, 9, 11, 3, 3, 1, 1, l(1, 1), l(1, 1), 1));
        r.add(c2("1x1", 3, 8, 40, 7, 5, 1, 1, 1, 1, l(0, 0), l(0, 0), 1));
        r.add(c2("7x7 s2 C3", 2, 3, 16, 23, 19, 7, 7, 2, 1, l(3, 3), l(3, 3), 1));
        r.add(c2("3x3 s2 d2 asym", 2, 12, 20, 13, 14, 3, 3, 2, 2, l(2, 3), l(1, 0), 1));
        r.add(c2("groups 2", 2, 16, 32, 8, 9, 3, 3, 1, 1, l(1, 1), l(1, 1), 2));
        r.add(c2("depthwise s2", 2, 24, 24, 15, 16, 3, 3, 2, 1, l(1, 1), l(1, 1), 24));
        r.add(c2("batch 1 big pad", 1, 5, 7, 6, 6, 3, 3, 1, 1, l(4, 4), l(4, 4), 1));
        r.add(c2("odd 5x3", 2, 7, 9, 10, 9, 5, 3, 1, 1, l(2, 1), l(1, 0), 1));
        r.add(c2("tiles K136", 2, 32, 136, 12, 12, 3, 3, 1, 1, l(1, 1), l(1, 1), 1));
        r.add(c2("multiplier 2", 2, 8, 16, 9, 7, 3, 3, 1, 1, l(1, 1), l(1, 1), 8));
        r.add(new Case("conv1d", 2, 16, 8, l(37), l(5), l(2), l(2), l(3), l(1), 1));
        r.add(new Case("conv3d", 2, 8, 16, l(5, 6, 7), l(3, 3, 3), l(1, 2, 1), l(1, 1, 1), l(1, 1, 1), l(1, 0, 1), 1));
        return r;
    }

    private static double rel(DType t, Algorithm a) {
        return switch (t) {
            case FLOAT64 -> 1e-10;
            case BFLOAT16 -> 1.6e-2;
            case FLOAT16 -> 4e-3;
            default -> a == Algorithm.REFERENCE ? 1e-5 : 4e-3;
        };
    }

    private static long seed = 1;

    /** Uniform [-1, 1) values, rounded to {@code type}, as a float64 CPU tensor. */
    private static Tensor random(DType type, long... dims) {
        try (Tensor f = Generator.seeded(seed++ * 7919).uniform(-1, 1, DType.FLOAT64, Device.CPU, dims);
             Tensor t = f.to(type)) {
            return t.to(DType.FLOAT64);
        }
    }

    private static Tensor gpu(Tensor ref64, DType type) {
        try (Tensor t = ref64.to(type)) {
            return t.to(GPU);
        }
    }

    /** Compares a CUDA result with the float64 CPU reference (see the class comment for the bound). */
    static void assertNear(Tensor ref, Tensor got, double r, String what) {
        assertArrayEquals(ref.dims(), got.dims(), what + ": shape");
        double[] a = ref.toDoubleArray();
        double[] b;
        try (Tensor g64 = got.to(DType.FLOAT64, Device.CPU)) {
            b = g64.toDoubleArray();
        }
        double scale = 0;
        for (double v : a) {
            scale = Math.max(scale, Math.abs(v));
        }
        for (int i = 0; i < a.length; i++) {
            double tol = r * Math.abs(a[i]) + r * 0.25 * scale;
            assertTrue(Math.abs(a[i] - b[i]) <= tol, what + " [" + i + " of " + a.length + "]: reference " + a[i]
                    + " vs cuda " + b[i] + " (tolerance " + tol + ")");
        }
    }

    private static void grid(DType type, Algorithm algo) {
        for (Case cs : cases()) {
            for (DataLayout layout : DataLayout.values()) {
                try (var scope = Scope.open()) {
                    String what = type + " " + layout + " " + algo + " " + cs;
                    double r = rel(type, algo);
                    Tensor x = random(type, cs.xDims(layout));
                    Tensor w = random(type, cs.wDims());
                    Tensor b = random(type, cs.k);
                    Tensor xg = gpu(x, type);
                    Tensor wg = gpu(w, type);
                    Tensor bg = gpu(b, type);
                    for (Activation act : Activation.values()) {
                        ConvOptions ref = cs.options(layout, Algorithm.REFERENCE, act);
                        ConvOptions opt = cs.options(layout, algo, act);
                        Tensor y = conv(cs, x, w, act == Activation.NONE ? null : b, ref);
                        Tensor yg = conv(cs, xg, wg, act == Activation.NONE ? null : bg, opt);
                        assertNear(y, yg, r, "forward " + act + " " + what);
                    }
                    Tensor y = conv(cs, x, w, b, cs.options(layout, Algorithm.REFERENCE, Activation.NONE));
                    Tensor dy = random(type, y.dims());
                    Tensor dyg = gpu(dy, type);
                    ConvOptions ref = cs.options(layout, Algorithm.REFERENCE, Activation.NONE);
                    ConvOptions opt = cs.options(layout, algo, Activation.NONE);
                    Tensor dx = Convolution.convBackwardData(dy, w, cs.in, ref);
                    Tensor dxg = Convolution.convBackwardData(dyg, wg, cs.in, opt);
                    assertNear(dx, dxg, r, "backward-data " + what);
                    Tensor[] dw = Convolution.convBackwardWeight(x, dy, cs.kernel, true, ref);
                    Tensor[] dwg = Convolution.convBackwardWeight(xg, dyg, cs.kernel, true, opt);
                    // weight gradients sum over N*P products: allow the scale term twice
                    assertNear(dw[0], dwg[0], r * 2, "backward-weight " + what);
                    assertNear(dw[1], dwg[1], r * 2, "backward-bias " + what);
                }
            }
        }
    }

    private static Tensor conv(Case cs, Tensor x, Tensor w, Tensor b, ConvOptions o) {
        return switch (cs.spatial()) {
            case 1 -> Convolution.conv1d(x, w, b, o);
            case 2 -> Convolution.conv2d(x, w, b, o);
            default -> Convolution.conv3d(x, w, b, o);
        };
    }

    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"FLOAT32", "FLOAT64", "BFLOAT16", "FLOAT16"})
    void autoAgainstCpuReference(DType type) {
        grid(type, Algorithm.AUTO);
    }

    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"FLOAT32", "BFLOAT16"})
    void implicitGemmForcedAgainstCpuReference(DType type) {
        grid(type, Algorithm.IMPLICIT_GEMM); // depthwise shapes through the GEMM too
    }

    private static boolean cudnnLoads() {
        try {
            org.bytedeco.javacpp.Loader.load(org.bytedeco.cuda.global.cudnn.class);
            return true;
        } catch (Throwable e) {
            return false;
        }
    }

    /** cuDNN through the presets (asymmetric-padding cases fall back to AUTO); skipped without libcudnn. */
    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"FLOAT32", "FLOAT64", "BFLOAT16", "FLOAT16"})
    void cudnnAgainstCpuReference(DType type) {
        Assumptions.assumeTrue(cudnnLoads(), "libcudnn cannot be loaded on this machine");
        grid(type, Algorithm.CUDNN);
    }

    @Test
    void cudaReferenceIsExactFloat32() {
        grid(DType.FLOAT32, Algorithm.REFERENCE);
    }

    @Test
    void convTransposeMatchesCpu() {
        for (DataLayout layout : DataLayout.values()) {
            try (var scope = Scope.open()) {
                Tensor x = random(DType.FLOAT32, layout == DataLayout.NCHW ? l(2, 12, 7, 6) : l(2, 7, 6, 12));
                Tensor w = random(DType.FLOAT32, 12, 5, 3, 3);
                Tensor b = random(DType.FLOAT32, 10);
                ConvOptions ref = ConvOptions.builder().stride(2).padding(1).outputPadding(1).groups(2).layout(layout)
                        .algorithm(Algorithm.REFERENCE).build();
                ConvOptions opt = ConvOptions.builder().stride(2).padding(1).outputPadding(1).groups(2).layout(layout)
                        .build();
                Tensor y = Convolution.convTranspose2d(x, w, b, ref);
                Tensor yg = Convolution.convTranspose2d(gpu(x, DType.FLOAT32), gpu(w, DType.FLOAT32),
                        gpu(b, DType.FLOAT32), opt);
                assertNear(y, yg, 4e-3, "conv_transpose " + layout);
            }
        }
    }

    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"FLOAT32", "BFLOAT16"})
    void backwardWeightIsDeterministic(DType type) {
        for (Case cs : List.of(c2("resnet-ish", 4, 64, 64, 20, 20, 3, 3, 1, 1, l(1, 1), l(1, 1), 1),
                c2("depthwise", 4, 64, 64, 20, 20, 3, 3, 1, 1, l(1, 1), l(1, 1), 64))) {
            try (var scope = Scope.open()) {
                ConvOptions o = cs.options(DataLayout.NHWC, Algorithm.AUTO, Activation.NONE);
                Tensor x = gpu(random(type, cs.xDims(DataLayout.NHWC)), type);
                Tensor dy = gpu(random(type, cs.act(DataLayout.NHWC, cs.k, cs.in)), type);
                Tensor[] a = Convolution.convBackwardWeight(x, dy, cs.kernel, true, o);
                Tensor[] b = Convolution.convBackwardWeight(x, dy, cs.kernel, true, o);
                assertArrayEquals(a[0].toDoubleArray(), b[0].toDoubleArray(), "dw bit-identical " + cs);
                assertArrayEquals(a[1].toDoubleArray(), b[1].toDoubleArray(), "dbias bit-identical " + cs);
            }
        }
    }

    @Test
    void errorsNameTheOpAndArguments() {
        try (var scope = Scope.open()) {
            Tensor x = Tensor.zeros(DType.FLOAT16, Device.CPU, 1, 4, 5, 5);
            Tensor w = Tensor.zeros(DType.FLOAT16, Device.CPU, 4, 4, 3, 3);
            UnsupportedOperationException e = assertThrows(UnsupportedOperationException.class,
                    () -> Convolution.conv2d(x, w, null, ConvOptions.defaults()));
            assertTrue(e.getMessage().contains("conv") && e.getMessage().contains("CUDA only"), e.getMessage());
            Tensor xg = x.to(GPU);
            Tensor wg = w.to(GPU);
            Tensor wd = Tensor.zeros(DType.FLOAT64, Device.CPU, 4, 4, 3, 3).to(GPU);
            IllegalArgumentException ie = assertThrows(IllegalArgumentException.class,
                    () -> Convolution.conv2d(xg, wd, null, ConvOptions.defaults()));
            assertTrue(ie.getMessage().contains("weight"), ie.getMessage());
            ConvOptions dw = ConvOptions.builder().algorithm(Algorithm.DEPTHWISE).build();
            e = assertThrows(UnsupportedOperationException.class, () -> Convolution.conv2d(xg, wg, null, dw));
            assertTrue(e.getMessage().contains("DEPTHWISE"), e.getMessage());
            Tensor x64 = Tensor.zeros(DType.FLOAT64, Device.CPU, 1, 4, 5, 5).to(GPU);
            ConvOptions ig = ConvOptions.builder().algorithm(Algorithm.IMPLICIT_GEMM).build();
            e = assertThrows(UnsupportedOperationException.class, () -> Convolution.conv2d(x64, wd, null, ig));
            assertTrue(e.getMessage().contains("float64"), e.getMessage());
            assertEquals(Algorithm.IMPLICIT_GEMM, Convolution.chosenAlgorithm(xg, wg, ConvOptions.defaults(), Convolution.Pass.FORWARD));
        }
    }
}
