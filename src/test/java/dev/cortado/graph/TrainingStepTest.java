package dev.cortado.graph;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
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
 * {@link TrainingStep#run} (one graph: forward, loss, backward, clipping and the optimizer's update
 * nodes), one by the eager loop (forward, loss, backward, clipping, optimizer step); after every step
 * the losses, and after k steps every parameter, buffer and optimizer state tensor, must agree.
 * float32 throughout; with the default passes, tolerance 1e-4 relative + 1e-5 absolute (the graph's
 * GEMM epilogue and the eager add round differently; over 4 steps of Adam those differences stay
 * below it); without passes (the same kernels in the same order as eager), 1e-6 relative + 1e-7
 * absolute.
 */
class TrainingStepTest {
    private static final Generator GEN = Generator.seeded(31);
    private static final Reference.Tol TOL = new Reference.Tol(1e-4, 1e-5);
    private static final Reference.Tol TIGHT = new Reference.Tol(1e-6, 1e-7);
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

    /** Steps a compiled copy and an eager copy on the same batches and compares them, with the default passes and with none. */
    private static void compare(LongFunction<Module> make, Function<List<Tensor>, Optimizer> optimizer,
            BiFunction<Tensor, Tensor, Tensor> loss, Tensor[][] batches, double maxGradNorm, String what) {
        compare(make, optimizer, loss, batches, maxGradNorm, CompileOptions.Level.DEFAULT, TOL, what);
        compare(make, optimizer, loss, batches, maxGradNorm, CompileOptions.Level.NONE, TIGHT, what + ", no passes");
    }

    private static void compare(LongFunction<Module> make, Function<List<Tensor>, Optimizer> optimizer,
            BiFunction<Tensor, Tensor, Tensor> loss, Tensor[][] batches, double maxGradNorm, CompileOptions.Level level,
            Reference.Tol tol, String what) {
        try (Module compiled = make.apply(0); Module eager = make.apply(0);
             Optimizer oc = optimizer.apply(compiled.parameters()); Optimizer oe = optimizer.apply(eager.parameters())) {
            compiled.train();
            eager.train();
            CompileOptions.Builder b = CompileOptions.builder().verify(true).level(level);
            if (maxGradNorm != Double.POSITIVE_INFINITY) {
                b.maxGradNorm(maxGradNorm);
            }
            try (TrainingStep step = Graphs.compileTrainingStep(compiled, loss, oc, batches[0][0], batches[0][1], b.build())) {
                assertAllClose(eager, compiled, tol, what + ", after compiling (the capture must leave the model as it was)");
                String text = step.graph().toString();
                assertTrue(text.contains("_backward"), text);
                // clipping needs every gradient first: one update; else one per parameter
                assertEquals(maxGradNorm != Double.POSITIVE_INFINITY ? 1 : oc.params().size(),
                        countUpdates(step.graph(), "optimizer"), text);
                assertEquals(1, step.graph().outputs().size(), "the step's graph returns the loss alone:\n" + text);
                for (int k = 0; k < STEPS; k++) {
                    Tensor[] batch = batches[k % batches.length];
                    try (Tensor want = eagerStep(eager, oe, loss, batch, maxGradNorm); Tensor got = step.run(batch)) {
                        Reference.assertCloseChecked(want.toDoubleArray(), got.toDoubleArray(), tol, what + " loss, step " + k);
                    }
                }
                assertEquals(STEPS, oc.stepCount());
                assertAllClose(eager, compiled, tol, what + " after " + STEPS + " steps");
                assertStateClose(oe, oc, tol, what + " after " + STEPS + " steps");
            }
        }
    }

    static int countUpdates(Graph g, String kind) {
        int n = 0;
        for (Node node : g.nodes()) {
            if (node instanceof Node.Update u && u.kind().equals(kind)) {
                n++;
            }
        }
        return n;
    }

    private static void assertStateClose(Optimizer want, Optimizer got, Reference.Tol tol, String what) {
        Map<String, Tensor> w = want.state();
        Map<String, Tensor> g = got.state();
        try {
            assertEquals(w.keySet(), g.keySet(), what);
            for (Map.Entry<String, Tensor> e : w.entrySet()) {
                Reference.assertClose(e.getValue().toDoubleArray(), g.get(e.getKey()).toDoubleArray(), tol,
                        what + ": optimizer state " + e.getKey());
            }
        } finally {
            w.values().forEach(Tensor::close);
            g.values().forEach(Tensor::close);
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

    private static void assertAllClose(Module want, Module got, Reference.Tol tol, String what) {
        Map<String, Tensor> w = want.namedParameters();
        Map<String, Tensor> g = got.namedParameters();
        for (Map.Entry<String, Tensor> e : w.entrySet()) {
            Reference.assertCloseChecked(e.getValue().toDoubleArray(), g.get(e.getKey()).toDoubleArray(), tol,
                    what + ": parameter " + e.getKey());
        }
        Map<String, Tensor> wb = want.namedBuffers();
        Map<String, Tensor> gb = got.namedBuffers();
        for (Map.Entry<String, Tensor> e : wb.entrySet()) {
            if (e.getValue() != null) {
                Reference.assertCloseChecked(e.getValue().toDoubleArray(), gb.get(e.getKey()).toDoubleArray(), tol,
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

    /**
     * The write-after-read rule of update nodes, and that it matters: the passes keep every update;
     * a graph with an update dropped leaves its parameter as it was; a graph with an update moved
     * before a read of the old value is rejected by the verifier and, run anyway, ends with other
     * parameters than the graph in order.
     */
    @Test
    void droppedOrReorderedUpdatesChangeTheResult() {
        try (Scope s = Scope.open(); Tensor x = randn(9, 6)) {
            Tensor y = labels(9, 3, 1);
            Sequential mlp = new Sequential(new Linear(6, 16, true, ParamOptions.seeded(3)), Activation.gelu(),
                    new Linear(16, 3, true, ParamOptions.seeded(4)));
            mlp.train();
            CompileOptions none = CompileOptions.builder().level(CompileOptions.Level.NONE).verify(true).build();
            try (Optimizer opt = Sgd.builder().lr(0.1).momentum(0.9).build(mlp.parameters());
                 TrainingStep step = Graphs.compileTrainingStep(mlp, Losses::crossEntropy, opt, x, y, none)) {
                Graph g = step.capturedGraph();
                int updates = countUpdates(g, "optimizer");
                assertEquals(4, updates, g.toString());
                for (Pass p : List.of(new DeadCodeElimination(), new CommonSubexpressionElimination(),
                        new MemoryAwareSchedule(), new ElementwiseFusion(), new ActivationCheckpointing(1))) {
                    try (Graph h = p.apply(g).verify()) {
                        assertEquals(updates, countUpdates(h, "optimizer"), p.name() + " dropped an update:\n" + h);
                    }
                }
                double[][] inOrder = runFromSameStart(g, mlp, x, y);
                // dropped: the last update goes; its parameter keeps its value
                Node last = null;
                for (Node n : g.nodes()) {
                    last = n instanceof Node.Update ? n : last;
                }
                Node.Update dropped = (Node.Update) last;
                int droppedParam = mlp.parameters().indexOf(dropped.writes().get(0).tensor());
                try (Graph h = without(g, dropped)) {
                    h.verify();
                    double[][] got = runFromSameStart(h, mlp, x, y);
                    double[] before = mlp.parameters().get(droppedParam).toDoubleArray();
                    assertArrayEquals(before, got[droppedParam], "a dropped update must leave its parameter as it was");
                    assertFalse(java.util.Arrays.equals(before, inOrder[droppedParam]), "the update changes the parameter");
                }
                // reordered: an update moved right after its gradient, before a later read of the old value
                try (Graph h = movedBeforeARead(g)) {
                    GraphException e = assertThrows(GraphException.class, h::verify);
                    assertTrue(e.getMessage().contains("updated it in place"), e.getMessage());
                    double[][] got = runFromSameStart(h, mlp, x, y);
                    boolean differs = false;
                    for (int i = 0; i < got.length; i++) {
                        for (int j = 0; j < got[i].length; j++) {
                            differs |= !Reference.within(inOrder[i][j], got[i][j], TOL.abs() + TOL.rel() * Math.abs(inOrder[i][j]));
                        }
                    }
                    assertTrue(differs, "a read after the update sees the new value: the parameters must differ");
                }
            }
            mlp.close();
        }
    }

    /** Runs {@code g} once and returns the parameters after it; the module's parameters and the optimizer's state are put back. */
    @SuppressWarnings("try")
    private static double[][] runFromSameStart(Graph g, Module m, Tensor x, Tensor y) {
        List<Tensor> ps = g.parameters().stream().map(Value::tensor).toList();
        List<Tensor> saved = new java.util.ArrayList<>();
        try (dev.cortado.autograd.Autograd.GradMode off = dev.cortado.autograd.Autograd.noGrad()) {
            for (Tensor p : ps) {
                saved.add(p.copy());
            }
            try (Executable e = new Executable(g)) {
                for (Tensor t : e.run(x, y)) {
                    t.close();
                }
            }
            double[][] after = new double[m.parameters().size()][];
            for (int i = 0; i < after.length; i++) {
                after[i] = m.parameters().get(i).toDoubleArray();
            }
            for (int i = 0; i < ps.size(); i++) {
                ps.get(i).copyFrom(saved.get(i));
                saved.get(i).close();
            }
            return after;
        }
    }

    private static Graph without(Graph g, Node dropped) {
        Rewriter r = new Rewriter(g);
        for (Node n : g.nodes()) {
            if (n != dropped) {
                r.copy(n);
            }
        }
        return r.finish();
    }

    /**
     * {@code g} with an update moved before the last read of the parameter it writes, as a schedule
     * that followed data edges only could place it: the nodes its gradient depends on that come after
     * that read are moved before it, then the update, then the read and the rest.
     */
    private static Graph movedBeforeARead(Graph g) {
        List<Node> nodes = g.nodes();
        for (int u = 0; u < nodes.size(); u++) {
            if (!(nodes.get(u) instanceof Node.Update update)) {
                continue;
            }
            Value w = update.writes().get(0);
            int lastRead = -1;
            for (int i = 0; i < u; i++) {
                for (Value in : nodes.get(i).inputs()) {
                    if (in != null && MemoryPlan.root(g, in) == w && !(nodes.get(i) instanceof Node.View)) {
                        lastRead = i;
                    }
                }
            }
            java.util.Set<Node> cone = java.util.Collections.newSetFromMap(new java.util.IdentityHashMap<>());
            java.util.ArrayDeque<Value> todo = new java.util.ArrayDeque<>(update.reads());
            while (!todo.isEmpty()) {
                Node p = g.producer(todo.pop());
                if (p != null && cone.add(p)) {
                    p.inputs().stream().filter(java.util.Objects::nonNull).forEach(todo::push);
                }
            }
            if (lastRead < 0 || cone.contains(nodes.get(lastRead))) {
                continue;
            }
            Rewriter r = new Rewriter(g);
            for (int i = 0; i < lastRead; i++) {
                r.copy(nodes.get(i));
            }
            for (int i = lastRead; i < nodes.size(); i++) {
                if (cone.contains(nodes.get(i))) {
                    r.copy(nodes.get(i));
                }
            }
            r.copy(update);
            for (int i = lastRead; i < nodes.size(); i++) {
                if (i != u && !cone.contains(nodes.get(i))) {
                    r.copy(nodes.get(i));
                }
            }
            return r.finish();
        }
        throw new AssertionError("no update can be moved before a read of its parameter:\n" + g);
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
