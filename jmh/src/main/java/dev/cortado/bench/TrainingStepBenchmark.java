package dev.cortado.bench;

import ai.djl.ndarray.NDManager;
import dev.cortado.ops.Autocast;
import dev.cortado.ops.DataLayout;
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
 * Full training steps (forward, softmax cross-entropy, backward, SGD momentum 0.9 lr 0.01, grads
 * cleared, loss read back), float32, Cortado next to PyTorch (libtorch 2.7.1 CPU through DJL
 * 0.35.1's training API) on the same model, weights and batch ({@link TrainingModels}):
 * <ul>
 *   <li>{@code mlp}: 784-1024-1024-10 with ReLU, batch 256;</li>
 *   <li>{@code cnn}: the MNIST CNN, batch 128, [128,1,28,28] NCHW: conv 1->32 3x3 pad 1, BN, ReLU,
 *       maxpool 2, conv 32->64 3x3 pad 1, BN, ReLU, maxpool 2, flatten, linear 3136->128, ReLU,
 *       linear 128->10;</li>
 *   <li>{@code mlp_tiny} (16-16-16-10, batch 2) and {@code cnn_tiny} ([2,1,8,8], 2 and 4 channels,
 *       hidden 8): the same op sequences on shapes where kernel time is negligible, so that their
 *       step time is the per-step host overhead (Java / JNI dispatch, autograd tape, allocation,
 *       thread-pool wake-ups of tiny kernels).</li>
 * </ul>
 * Benchmarks: {@code cortadoStep} (Cortado, NCHW), {@code cortadoStepAutocastBf16} (the same
 * under bfloat16 autocast), {@code torchStep} (PyTorch through DJL, NCHW),
 * {@link Nhwc#cortadoStepNHWC} (Cortado's CNNs in NHWC, weights permuted so that they compute the
 * same function). Thread counts as in the other side-by-side benchmarks ({@link TorchPeer}):
 * libtorch is loaded only in the forks that measure it.
 *
 * <p>Sanity, in every fork's setup before any measurement: the loss must decrease over 5 steps on
 * the fixed batch; the PyTorch forks also run the Cortado step from the same weights and require
 * the two loss trajectories to agree (1e-3 relative). The Cortado forks print the allocator's
 * high-water mark over 3 steps ({@link TrainingModels#peakMemory}). {@link #main} runs the checks
 * alone: {@code java -cp ... dev.cortado.bench.TrainingStepBenchmark [threads]}.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Fork(value = 1, jvmArgsAppend = {"-Xms1g", "-Xmx1g"})
@Warmup(iterations = 2, time = 2, timeUnit = TimeUnit.SECONDS)
@Measurement(iterations = 3, time = 2, timeUnit = TimeUnit.SECONDS)
@State(Scope.Benchmark)
public class TrainingStepBenchmark {
    static final int SANITY_STEPS = 5;

    @Param({"mlp", "cnn", "mlp_tiny", "cnn_tiny"})
    public String model;

    @Param({"1", "2"})
    public int threads;

    private TrainingModels.CortadoStep cortado;
    private TrainingModels.TorchStep torch;
    private NDManager torchManager;

    @Setup(Level.Trial)
    public void setup(BenchmarkParams params) {
        BenchSupport.setThreads(threads);
        TrainingModels.Spec s = TrainingModels.spec(model);
        TrainingModels.Data d = TrainingModels.Data.of(s);
        cortado = new TrainingModels.CortadoStep(s, DataLayout.NCHW, d);
        if (params.getBenchmark().endsWith(".torchStep")) {
            torchManager = TorchPeer.start(threads);
            torch = new TrainingModels.TorchStep(torchManager, s, d, cortado.djlOrderedState());
            float[] lt = TrainingModels.losses("PyTorch " + model, SANITY_STEPS, torch::step);
            float[] lc = TrainingModels.losses("Cortado " + model, SANITY_STEPS, cortado::step);
            TrainingModels.sameLosses(model + " Cortado vs PyTorch", lc, lt, 1e-3);
            cortado.close();
            cortado = null;
        } else {
            TrainingModels.losses("Cortado " + model, SANITY_STEPS, cortado::step);
            printMemory(cortado, "NCHW");
        }
    }

    static void printMemory(TrainingModels.CortadoStep c, String layout) {
        int steps = 3;
        long[] m = TrainingModels.peakMemory(steps, c::step);
        System.out.println("# memory " + c.spec.name() + " " + layout + ": live between steps " + TrainingModels.mib(m[0])
                + " (parameters " + TrainingModels.mib(4 * c.model.numParameters()) + "), peak during a step "
                + TrainingModels.mib(m[1]) + ", peak - live before " + TrainingModels.mib(m[1] - m[0])
                + ", live growth per step " + TrainingModels.mib((m[3] - m[0]) / steps) + ", block cache after "
                + TrainingModels.mib(m[2]));
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        if (cortado != null) {
            cortado.close();
        }
        if (torch != null) {
            torch.close();
            torchManager.close();
        }
    }

    @Benchmark
    public float cortadoStep() {
        return cortado.step();
    }

    /**
     * The same Cortado step under {@link Autocast#bfloat16()}: matmuls (the linear layers, forward
     * and backward) in bfloat16 with float32 accumulation on the bf16 GEMM kernel the library
     * chose (native/cpu/gemm_bf16.cpp); convolutions, norms, loss and SGD stay float32.
     */
    @Benchmark
    public float cortadoStepAutocastBf16() {
        try (Autocast ac = Autocast.bfloat16()) {
            return cortado.step();
        }
    }

    @Benchmark
    public float torchStep() {
        return torch.step();
    }

    /** Cortado's CNNs with NHWC activations (same function: the first linear layer's weight is permuted). */
    @BenchmarkMode(Mode.AverageTime)
    @OutputTimeUnit(TimeUnit.MILLISECONDS)
    @Fork(value = 1, jvmArgsAppend = {"-Xms1g", "-Xmx1g"})
    @Warmup(iterations = 2, time = 2, timeUnit = TimeUnit.SECONDS)
    @Measurement(iterations = 3, time = 2, timeUnit = TimeUnit.SECONDS)
    @State(Scope.Benchmark)
    public static class Nhwc {
        @Param({"cnn", "cnn_tiny"})
        public String model;

        @Param({"1", "2"})
        public int threads;

        private TrainingModels.CortadoStep cortado;

        @Setup(Level.Trial)
        public void setup() {
            BenchSupport.setThreads(threads);
            TrainingModels.Spec s = TrainingModels.spec(model);
            TrainingModels.Data d = TrainingModels.Data.of(s);
            float[] ref;
            try (TrainingModels.CortadoStep nchw = new TrainingModels.CortadoStep(s, DataLayout.NCHW, d)) {
                ref = TrainingModels.losses("Cortado " + model + " NCHW", SANITY_STEPS, nchw::step);
            }
            cortado = new TrainingModels.CortadoStep(s, DataLayout.NHWC, d);
            float[] l = TrainingModels.losses("Cortado " + model + " NHWC", SANITY_STEPS, cortado::step);
            TrainingModels.sameLosses(model + " NHWC vs NCHW", ref, l, 1e-3);
            printMemory(cortado, "NHWC");
        }

        @TearDown(Level.Trial)
        public void tearDown() {
            cortado.close();
        }

        @Benchmark
        public float cortadoStepNHWC() {
            return cortado.step();
        }
    }

    /**
     * The sanity checks alone, without JMH: for each model, PyTorch and Cortado (NCHW, and NHWC
     * for the CNNs) from the same weights on the same batch; losses must decrease and agree.
     * Also prints the mean time of 5 more steps per side (a smoke number, not a measurement).
     */
    public static void main(String[] args) {
        int threads = args.length > 0 ? Integer.parseInt(args[0]) : 1;
        BenchSupport.setThreads(threads);
        try (NDManager m = TorchPeer.start(threads)) {
            for (String model : new String[] {"mlp_tiny", "cnn_tiny", "mlp", "cnn"}) {
                TrainingModels.Spec s = TrainingModels.spec(model);
                TrainingModels.Data d = TrainingModels.Data.of(s);
                try (TrainingModels.CortadoStep c = new TrainingModels.CortadoStep(s, DataLayout.NCHW, d);
                     TrainingModels.TorchStep t = new TrainingModels.TorchStep(m, s, d, c.djlOrderedState())) {
                    float[] lc = TrainingModels.losses("Cortado " + model, SANITY_STEPS, c::step);
                    float[] lt = TrainingModels.losses("PyTorch " + model, SANITY_STEPS, t::step);
                    TrainingModels.sameLosses(model + " Cortado vs PyTorch", lc, lt, 1e-3);
                    System.out.printf("# smoke %s: Cortado %.3f ms/step, PyTorch %.3f ms/step%n", model,
                            smoke(c::step), smoke(t::step));
                    printMemory(c, "NCHW");
                }
                if (s.cnn()) {
                    try (TrainingModels.CortadoStep c = new TrainingModels.CortadoStep(s, DataLayout.NHWC, d)) {
                        TrainingModels.losses("Cortado " + model + " NHWC", SANITY_STEPS, c::step);
                    }
                }
            }
        }
    }

    private static double smoke(Runnable step) {
        step.run();
        long t0 = System.nanoTime();
        for (int i = 0; i < 5; i++) {
            step.run();
        }
        return (System.nanoTime() - t0) / 5e6;
    }
}
