package dev.cortado.bench;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import ai.djl.nn.convolutional.Conv2d;
import ai.djl.training.GradientCollector;
import dev.cortado.ops.Convolution;
import dev.cortado.ops.DataLayout;
import dev.cortado.ops.Convolution.ConvOptions;
import dev.cortado.ops.Generator;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;
import org.openjdk.jmh.infra.BenchmarkParams;

/**
 * 2-d convolutions, float32, Cortado next to PyTorch (libtorch 2.7.1 CPU through DJL 0.35.1) on the
 * same shapes and the same data (the PyTorch tensors are copies of Cortado's).
 *
 * <p>Shapes ({@code shape}), batch {@code n} (default 32), weight [K, C/groups, kh, kw], no bias:
 * <ul>
 *   <li>{@code r3x3_64_56}: 64 -> 64, 3x3, pad 1, 56x56 (ResNet-50 conv2_x);</li>
 *   <li>{@code r3x3_128_28}: 128 -> 128, 3x3, pad 1, 28x28 (conv3_x);</li>
 *   <li>{@code r3x3_256_14}: 256 -> 256, 3x3, pad 1, 14x14 (conv4_x);</li>
 *   <li>{@code r1x1_64_256_56}: 64 -> 256, 1x1, 56x56 (conv2_x expansion);</li>
 *   <li>{@code r7x7_3_64_224}: 3 -> 64, 7x7, stride 2, pad 3, 224x224 (the stem);</li>
 *   <li>{@code dw3x3_128_56}: depthwise 128 channels (groups 128), 3x3, pad 1, 56x56;</li>
 *   <li>{@code tconv4x4_64_32_56}: transposed 64 -> 32, 4x4, stride 2, pad 1, 56x56 -> 112x112
 *       (weight [64, 32, 4, 4]).</li>
 * </ul>
 * FLOPs per pass (forward, backward-data, backward-weight each): 2*N*K*(C/g)*kh*kw*oh*ow of the
 * underlying convolution (for the transposed one: the convolution 32 -> 64 at 112x112 -> 56x56 whose
 * backward-data it is).
 *
 * <p>Benchmarks:
 * <ul>
 *   <li>{@code cortadoForward{NCHW,NHWC}} / {@code cortadoBackward{NCHW,NHWC}}: activations in that layout, algorithm
 *       AUTO: forward = {@code Convolution.conv2d} (transposed: {@code convTranspose2d}); backward =
 *       {@code convBackwardData} + {@code convBackwardWeight} (transposed: dx = {@code conv2d}(dy, w),
 *       dw = {@code convBackwardWeight}(dy, x)). Outputs are allocated and closed each call.</li>
 *   <li>{@code torchForward}: DJL {@code Conv2d.conv2d} (aten::convolution, NCHW) without autograd.
 *       For the transposed shape DJL 0.35.1's PyTorch engine has no deconvolution
 *       ({@code PtNDArrayEx.deconvolution} throws "Not implemented"), so this runs the forward of the
 *       underlying convolution conv(z [N,32,112,112], w), i.e. the transposed conv's backward-data.</li>
 *   <li>{@code torchForwardBackward}: the same forward on fresh autograd leaves (x and w detached
 *       views, no copy, requiring gradients) and {@code backward(y, dy)}, which computes dx and dw
 *       (no gradient accumulation: the leaves are new each call). PyTorch's backward alone is not
 *       expressible in DJL without either re-running the forward or accumulating into .grad, so the
 *       backward time is reported as torchForwardBackward - torchForward. For the transposed shape
 *       the three passes (conv(z, w), dz = the transposed conv's forward, dw) are exactly the op set
 *       of Cortado's transposed forward + backward, so compare the sums there.</li>
 * </ul>
 * The PyTorch benchmarks first check PyTorch's forward (and, in torchForwardBackward, dx and dw)
 * against Cortado's NCHW results on the same data.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Fork(value = 1, jvmArgsAppend = {"-Xms3g", "-Xmx3g"})
@Warmup(iterations = 2, time = 1, timeUnit = TimeUnit.SECONDS)
@Measurement(iterations = 3, time = 1, timeUnit = TimeUnit.SECONDS)
@State(Scope.Benchmark)
public class ConvBenchmark {
    @Param({"r3x3_64_56", "r3x3_128_28", "r3x3_256_14", "r1x1_64_256_56", "r7x7_3_64_224", "dw3x3_128_56",
            "tconv4x4_64_32_56"})
    public String shape;

    @Param({"32"})
    public int n;

    @Param({"1", "2"})
    public int threads;

    /**
     * Cortado's algorithm ({@link Convolution.Algorithm}); AUTO unless given, e.g. {@code -p
     * algorithm=AUTO,DIRECT_NHWC,IM2COL_GEMM} to compare the forward paths (a forced algorithm
     * applies to the backward benchmarks too, which fail where it has no such pass).
     */
    @Param({"AUTO"})
    public String algorithm;

    /** Cortado's activation layout, from the benchmark's name (the PyTorch benchmarks: NCHW). */
    private String layout;

    // geometry of the underlying convolution x [n, c, h, w] -> y [n, k, oh, ow]
    private int c;
    private int k;
    private int groups;
    private int ks;
    private int stride;
    private int pad;
    private int h;
    private int oh;
    private boolean transposed;

    private ConvOptions options;
    private ConvOptions nchw;
    /** Cortado operands in {@link #layout}: x, y-shaped dy, and the weight. For transposed, x is the [n,64,56,56] input. */
    private Tensor x;
    private Tensor dy;
    private Tensor w;

    private NDManager torch;
    private NDArray tx;
    private NDArray tdy;
    private NDArray tw;
    private Shape tStride;
    private Shape tPad;
    private Shape tDil;

    private void geometry() {
        switch (shape) {
            case "r3x3_64_56" -> set(64, 64, 1, 3, 1, 1, 56);
            case "r3x3_128_28" -> set(128, 128, 1, 3, 1, 1, 28);
            case "r3x3_256_14" -> set(256, 256, 1, 3, 1, 1, 14);
            case "r1x1_64_256_56" -> set(64, 256, 1, 1, 1, 0, 56);
            case "r7x7_3_64_224" -> set(3, 64, 1, 7, 2, 3, 224);
            case "dw3x3_128_56" -> set(128, 128, 128, 3, 1, 1, 56);
            // the transposed conv 64 -> 32 at 56x56 -> 112x112 is the backward-data of conv 32 -> 64 at 112x112
            case "tconv4x4_64_32_56" -> {
                set(32, 64, 1, 4, 2, 1, 112);
                transposed = true;
            }
            default -> throw new IllegalArgumentException("unknown shape " + shape);
        }
        oh = (h + 2 * pad - ks) / stride + 1;
    }

    private void set(int c, int k, int groups, int ks, int stride, int pad, int h) {
        this.c = c;
        this.k = k;
        this.groups = groups;
        this.ks = ks;
        this.stride = stride;
        this.pad = pad;
        this.h = h;
    }

    /** FLOPs of one pass (forward, backward-data or backward-weight) of the underlying convolution. */
    public static double flopsPerPass(String shape, int n) {
        ConvBenchmark b = new ConvBenchmark();
        b.shape = shape;
        b.geometry();
        return 2.0 * n * b.k * (b.c / b.groups) * b.ks * b.ks * (double) b.oh * b.oh;
    }

    private static long[] act(DataLayout l, long n, long ch, long hw) {
        return l == DataLayout.NCHW ? new long[] {n, ch, hw, hw} : new long[] {n, hw, hw, ch};
    }

    private static Tensor toLayout(Tensor nchwTensor, DataLayout l) {
        if (l == DataLayout.NCHW) {
            return nchwTensor.contiguous();
        }
        try (Tensor v = nchwTensor.permute(0, 2, 3, 1)) {
            return v.contiguous();
        }
    }

    @Setup(Level.Trial)
    public void setup(BenchmarkParams params) {
        geometry();
        BenchSupport.setThreads(threads);
        layout = params.getBenchmark().endsWith("NHWC") ? "NHWC" : "NCHW";
        DataLayout l = DataLayout.valueOf(layout);
        options = ConvOptions.builder().stride(stride).padding(pad).groups(groups).layout(l)
                .algorithm(Convolution.Algorithm.valueOf(algorithm)).build();
        nchw = ConvOptions.builder().stride(stride).padding(pad).groups(groups).layout(DataLayout.NCHW).build();
        Generator g = Generator.seeded(42);
        // data in NCHW, then converted: the underlying conv's input z [n, c, h, h], its output gradient [n, k, oh, oh]
        long inCh = transposed ? k : c;
        long inHw = transposed ? oh : h;
        long outCh = transposed ? c : k;
        long outHw = transposed ? h : oh;
        double bound = 1.0 / Math.sqrt((double) (c / groups) * ks * ks);
        try (Tensor x0 = g.uniform(-1, 1, DType.FLOAT32, Device.CPU, n, inCh, inHw, inHw);
             Tensor dy0 = g.uniform(-1, 1, DType.FLOAT32, Device.CPU, n, outCh, outHw, outHw)) {
            w = g.uniform(-bound, bound, DType.FLOAT32, Device.CPU, k, c / groups, ks, ks);
            String bench = params.getBenchmark();
            boolean torchBench = bench.endsWith(".torchForward") || bench.endsWith(".torchForwardBackward");
            x = toLayout(x0, torchBench ? DataLayout.NCHW : l);
            dy = toLayout(dy0, torchBench ? DataLayout.NCHW : l);
            if (torchBench) {
                setupTorch(bench.endsWith(".torchForwardBackward"));
            } else {
                System.out.println("# Cortado AUTO algorithm: forward " + chosen(Convolution.Pass.FORWARD)
                        + ", backward-data " + chosen(Convolution.Pass.BACKWARD_DATA)
                        + ", backward-weight " + chosen(Convolution.Pass.BACKWARD_WEIGHT) + " (" + options + ")");
            }
        }
    }

    /** The algorithm AUTO picks for a pass of the underlying convolution. */
    private String chosen(Convolution.Pass pass) {
        if (transposed) {
            try (Tensor z = Tensor.zeros(DType.FLOAT32, Device.CPU, act(DataLayout.valueOf(layout), n, c, h))) {
                return Convolution.chosenAlgorithm(z, w, options, pass).toString();
            }
        }
        return Convolution.chosenAlgorithm(x, w, options, pass).toString();
    }

    /**
     * PyTorch operands (NCHW). The PyTorch op is always the underlying convolution: input z and
     * output gradient g. For the ordinary shapes z = x, g = dy; for the transposed shape z = dy
     * ([n, 32, 112, 112]) and g = x ([n, 64, 56, 56]).
     */
    private void setupTorch(boolean backward) {
        torch = TorchPeer.start(threads);
        tStride = new Shape(stride, stride);
        tPad = new Shape(pad, pad);
        tDil = new Shape(1, 1);
        tx = TorchPeer.copyOf(torch, transposed ? dy : x);
        tdy = TorchPeer.copyOf(torch, transposed ? x : dy);
        tw = TorchPeer.copyOf(torch, w);
        // correctness: the forward (and with backward, dx and dw) against Cortado's NCHW kernels
        try (NDManager m = torch.newSubManager()) {
            float[] ty;
            float[] tdx = null;
            float[] tdw = null;
            if (backward) {
                try (GradientCollector gc = torch.getEngine().newGradientCollector()) {
                    NDArray lx = TorchPeer.leaf(tx, m);
                    NDArray lw = TorchPeer.leaf(tw, m);
                    NDArray y = conv(lx, lw);
                    ty = y.toFloatArray();
                    TorchPeer.backward(y, tdy);
                    tdx = lx.getGradient().toFloatArray();
                    tdw = lw.getGradient().toFloatArray();
                }
            } else {
                NDArray y = conv(tx, tw);
                y.attach(m);
                ty = y.toFloatArray();
            }
            long[] hw = {h, h};
            long[] kk = {ks, ks};
            Tensor z = transposed ? dy : x;
            Tensor gy = transposed ? x : dy;
            try (Tensor cy = Convolution.conv2d(z, w, null, nchw)) {
                TorchPeer.check(shape + " forward", cy.toFloatArray(), ty, 1e-3);
            }
            if (backward) {
                try (Tensor cdx = Convolution.convBackwardData(gy, w, hw, nchw)) {
                    TorchPeer.check(shape + " backward-data", cdx.toFloatArray(), tdx, 1e-3);
                }
                Tensor[] cdw = Convolution.convBackwardWeight(z, gy, kk, false, nchw);
                try (Tensor d = cdw[0]) {
                    // dw sums N*oh*ow (1e5 to 4e5) float32 products: summation order alone gives ~1e-3
                    TorchPeer.check(shape + " backward-weight", d.toFloatArray(), tdw, 1e-2);
                }
            }
        }
    }

    private NDArray conv(NDArray in, NDArray weight) {
        NDList r = Conv2d.conv2d(in, weight, null, tStride, tPad, tDil, groups);
        return r.singletonOrThrow();
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        x.close();
        dy.close();
        w.close();
        if (torch != null) {
            torch.close();
        }
    }

    @Benchmark
    public long cortadoForwardNCHW() {
        return forward();
    }

    @Benchmark
    public long cortadoForwardNHWC() {
        return forward();
    }

    @Benchmark
    public long cortadoBackwardNCHW() {
        return backward();
    }

    @Benchmark
    public long cortadoBackwardNHWC() {
        return backward();
    }

    private long forward() {
        try (Tensor y = transposed ? Convolution.convTranspose2d(x, w, null, options)
                : Convolution.conv2d(x, w, null, options)) {
            return y.dataAddress();
        }
    }

    private long backward() {
        if (transposed) {
            // y = conv_transpose(x, w): dx = conv(dy, w), dw = conv_backward_weight(input dy, output-gradient x)
            Tensor dx = Convolution.conv2d(dy, w, null, options);
            Tensor[] dw = Convolution.convBackwardWeight(dy, x, new long[] {ks, ks}, false, options);
            long r = dx.dataAddress() ^ dw[0].dataAddress();
            dx.close();
            dw[0].close();
            return r;
        }
        Tensor dx = Convolution.convBackwardData(dy, w, new long[] {h, h}, options);
        Tensor[] dw = Convolution.convBackwardWeight(x, dy, new long[] {ks, ks}, false, options);
        long r = dx.dataAddress() ^ dw[0].dataAddress();
        dx.close();
        dw[0].close();
        return r;
    }

    @Benchmark
    public Object torchForward() {
        NDArray y = conv(tx, tw);
        y.close();
        return y;
    }

    @Benchmark
    public Object torchForwardBackward() {
        try (NDManager m = torch.newSubManager(); GradientCollector gc = torch.getEngine().newGradientCollector()) {
            NDArray lx = TorchPeer.leaf(tx, m);
            NDArray lw = TorchPeer.leaf(tw, m);
            NDArray y = conv(lx, lw);
            TorchPeer.backward(y, tdy);
            NDArray gx = lx.getGradient();
            NDArray gw = lw.getGradient();
            gx.close();
            gw.close();
            y.close();
            return gx;
        }
    }
}
