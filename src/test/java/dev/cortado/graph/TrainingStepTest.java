package dev.cortado.graph;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.nn.Activation;
import dev.cortado.nn.BatchNorm2d;
import dev.cortado.nn.CausalLanguageModel;
import dev.cortado.nn.Conv2d;
import dev.cortado.nn.Flatten;
import dev.cortado.nn.Linear;
import dev.cortado.nn.Losses;
import dev.cortado.nn.Module;
import dev.cortado.nn.ParamOptions;
import dev.cortado.nn.Pool;
import dev.cortado.nn.Sequential;
import dev.cortado.ops.Convolution;
import dev.cortado.ops.Generator;
import dev.cortado.optim.Adam;
import dev.cortado.optim.GradClip;
import dev.cortado.optim.Optimizer;
import dev.cortado.optim.Sgd;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import dev.cortado.testing.Reference;
import java.util.List;
import java.util.Map;
import java.util.function.BiFunction;
import java.util.function.Function;
import java.util.function.LongFunction;
import org.junit.jupiter.api.Test;

/**
 * Compiled training steps against eager ones: two copies of a model (same seed), one stepped by
 * {@link TrainingStep#run}, one by the eager loop (forward, loss, backward, clipping, optimizer
 * step); after every step the losses, and after k steps every parameter and buffer, must agree.
 * float32 throughout; tolerance 1e-4 relative + 1e-5 absolute (the graph's GEMM epilogue and the
 * eager add round differently; over 4 steps of Adam those differences stay below it).
 */
class TrainingStepTest {
    private static final Generator GEN = Generator.seeded(31);
    private static final Reference.Tol TOL = new Reference.Tol(1e-4, 1e-5);
    private static final int STEPS = 4;

    private static Tensor randn(long... dims) {
        return GEN.normal(0, 1, DType.FLOAT32, Device.CPU, dims);
    }

    private static Tensor labels(long n, int classes, long seed) {
        long[] ids = new long[(int) n];
        java.util.Random r = new java.util.Random(seed);
        for (int i = 0; i < ids.length; i++) {
            ids[i] = r.nextInt(classes);
        }
        return Tensor.of(ids, n);
    }

    /** Steps a compiled copy and an eager copy on the same batches and compares them. */
    private static void compare(LongFunction<Module> make, Function<List<Tensor>, Optimizer> optimizer,
            BiFunction<Tensor, Tensor, Tensor> loss, Tensor[][] batches, double maxGradNorm, String what) {
        try (Module compiled = make.apply(0); Module eager = make.apply(0);
             Optimizer oc = optimizer.apply(compiled.parameters()); Optimizer oe = optimizer.apply(eager.parameters())) {
            compiled.train();
            eager.train();
            CompileOptions.Builder b = CompileOptions.builder().verify(true);
            if (maxGradNorm != Double.POSITIVE_INFINITY) {
                b.maxGradNorm(maxGradNorm);
            }
            try (TrainingStep step = Graphs.compileTrainingStep(compiled, loss, oc, batches[0][0], batches[0][1], b.build())) {
                assertAllClose(eager, compiled, what + ", after compiling (the capture must leave the model as it was)");
                String text = step.graph().toString();
                assertTrue(text.contains("_backward"), text);
                for (int k = 0; k < STEPS; k++) {
                    Tensor[] batch = batches[k % batches.length];
                    double eagerNorm;
                    try (Tensor want = eagerStep(eager, oe, loss, batch, maxGradNorm); Tensor got = step.run(batch)) {
                        Reference.assertCloseChecked(want.toDoubleArray(), got.toDoubleArray(), TOL, what + " loss, step " + k);
                    }
                }
                assertEquals(STEPS, oc.stepCount());
                assertAllClose(eager, compiled, what + " after " + STEPS + " steps");
            }
        }
    }

    private static Tensor eagerStep(Module m, Optimizer opt, BiFunction<Tensor, Tensor, Tensor> loss, Tensor[] batch,
            double maxGradNorm) {
        opt.zeroGrad();
        Tensor l;
        try (Tensor y = m.forward(batch[0])) {
            l = loss.apply(y, batch[1]);
        }
        l.backward();
        if (maxGradNorm != Double.POSITIVE_INFINITY) {
            GradClip.clipByGlobalNorm(opt.params(), maxGradNorm);
        }
        opt.step();
        opt.zeroGrad();
        return l.detach();
    }

    private static void assertAllClose(Module want, Module got, String what) {
        Map<String, Tensor> w = want.namedParameters();
        Map<String, Tensor> g = got.namedParameters();
        for (Map.Entry<String, Tensor> e : w.entrySet()) {
            Reference.assertCloseChecked(e.getValue().toDoubleArray(), g.get(e.getKey()).toDoubleArray(), TOL,
                    what + ": parameter " + e.getKey());
        }
        Map<String, Tensor> wb = want.namedBuffers();
        Map<String, Tensor> gb = got.namedBuffers();
        for (Map.Entry<String, Tensor> e : wb.entrySet()) {
            if (e.getValue() != null) {
                Reference.assertCloseChecked(e.getValue().toDoubleArray(), gb.get(e.getKey()).toDoubleArray(), TOL,
                        what + ": buffer " + e.getKey());
            }
        }
    }

    @Test
    void mlpWithSgdMomentumAndClippingMatchesEager() {
        try (Scope s = Scope.open(); Tensor x1 = randn(9, 6); Tensor x2 = randn(9, 6)) {
            Tensor y1 = labels(9, 3, 1);
            Tensor y2 = labels(9, 3, 2);
            LongFunction<Module> mlp = seed -> new Sequential(new Linear(6, 16, true, ParamOptions.seeded(3)), Activation.gelu(),
                    new Linear(16, 3, true, ParamOptions.seeded(4)));
            compare(mlp, ps -> Sgd.builder().lr(0.1).momentum(0.9).weightDecay(1e-3).build(ps), Losses::crossEntropy,
                    new Tensor[][] {{x1, y1}, {x2, y2}}, Double.POSITIVE_INFINITY, "MLP, SGD momentum");
            // a small norm: every step clips
            compare(mlp, ps -> Sgd.builder().lr(0.1).momentum(0.9).nesterov(true).build(ps), Losses::crossEntropy,
                    new Tensor[][] {{x1, y1}, {x2, y2}}, 0.05, "MLP, SGD Nesterov, clipped to 0.05");
        }
    }

    @Test
    void mnistCnnWithBatchNormAndAdamWMatchesEager() {
        Convolution.ConvOptions same = Convolution.ConvOptions.builder().padding(1).build();
        LongFunction<Module> cnn = seed -> {
            ParamOptions p = ParamOptions.seeded(5);
            return new Sequential(
                    new Conv2d(1, 4, new long[] {3, 3}, same, false, p), new BatchNorm2d(4), Activation.relu(),
                    new Pool.MaxPool2d(2),
                    new Conv2d(4, 8, new long[] {3, 3}, same, false, p), new BatchNorm2d(8), Activation.relu(),
                    new Pool.MaxPool2d(2),
                    new Flatten(), new Linear(8 * 3 * 3, 16, true, p), Activation.relu(), new Linear(16, 10, true, p));
        };
        try (Scope s = Scope.open(); Tensor x1 = randn(5, 1, 13, 13); Tensor x2 = randn(5, 1, 13, 13)) {
            Tensor y1 = labels(5, 10, 3);
            Tensor y2 = labels(5, 10, 4);
            compare(cnn, ps -> Adam.adamW().lr(1e-2).weightDecay(0.05).build(ps), Losses::crossEntropy,
                    new Tensor[][] {{x1, y1}, {x2, y2}}, 1.0, "MNIST CNN (batch norm in training mode), AdamW, clipped");
        }
    }

    @Test
    void characterModelWithAdamMatchesEager() {
        int vocab = 11;
        LongFunction<Module> lm = seed -> new CausalLanguageModel(new CausalLanguageModel.Config(vocab, 16, 2, 4, 2, 32, 8, 0.0),
                ParamOptions.seeded(13));
        BiFunction<Tensor, Tensor, Tensor> loss = (logits, t) -> {
            try (Tensor flat = logits.reshape(-1, vocab); Tensor ft = t.reshape(-1)) {
                return Losses.crossEntropy(flat, ft);
            }
        };
        try (Scope s = Scope.open()) {
            Tensor[][] batches = new Tensor[2][];
            for (int k = 0; k < 2; k++) {
                Tensor ids = labels(2 * 8, vocab, 10 + k).reshape(2, 8);
                Tensor next = labels(2 * 8, vocab, 20 + k).reshape(2, 8);
                batches[k] = new Tensor[] {ids, next};
            }
            compare(lm, ps -> Adam.builder().lr(3e-3).build(ps), loss, batches, 1.0, "character model, Adam, clipped");
        }
    }

    /** Checkpointing under a budget: the same loss and gradients from a graph that holds fewer bytes at its peak. */
    @Test
    void checkpointedGradientsMatchWithALowerPlannedPeak() {
        try (Scope s = Scope.open(); Tensor x = randn(48, 16); Tensor fresh = randn(48, 16)) {
            Tensor y = labels(48, 5, 9);
            ParamOptions p = ParamOptions.seeded(17);
            Sequential mlp = new Sequential(new Linear(16, 96, true, p), Activation.gelu(), new Linear(96, 96, true, p),
                    Activation.gelu(), new Linear(96, 96, true, p), Activation.gelu(), new Linear(96, 5, true, p));
            CompileOptions plain = CompileOptions.builder().verify(true).build();
            CompileOptions tight = CompileOptions.builder().verify(true).memoryBudget(1).build();
            try (CompiledFunction f = Graphs.compileGradients(mlp, Losses::crossEntropy, x, y, plain);
                 CompiledFunction c = Graphs.compileGradients(mlp, Losses::crossEntropy, x, y, tight)) {
                MemoryPlan before = f.memoryPlan();
                MemoryPlan after = c.memoryPlan();
                assertTrue(after.plannedPeakBytes() < before.plannedPeakBytes(), "no saving:\n" + before + "\n" + after + "\n" + c.graph());
                assertTrue(c.graph().nodes().size() > f.graph().nodes().size(), "nothing recomputed:\n" + c.graph());
                for (Tensor in : new Tensor[] {x, fresh}) {
                    Tensor[] want = f.applyAll(in, y);
                    Tensor[] got = c.applyAll(in, y);
                    for (int i = 0; i < want.length; i++) {
                        Reference.assertCloseChecked(want[i].toDoubleArray(), got[i].toDoubleArray(), TOL,
                                "checkpointed output " + i);
                    }
                }
            }
            mlp.close();
        }
    }
}
