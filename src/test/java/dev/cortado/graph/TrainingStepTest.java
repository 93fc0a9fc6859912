package dev.cortado.graph;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.autograd.Autograd;
import dev.cortado.models.VisionTransformer;
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
        compare(make, optimizer, loss, batches, maxGradNorm, m -> { }, what);
    }

    /** As above, with {@code afterStep} run on both models after every step (a schedule the module keeps). */
    private static void compare(LongFunction<Module> make, Function<List<Tensor>, Optimizer> optimizer,
            BiFunction<Tensor, Tensor, Tensor> loss, Tensor[][] batches, double maxGradNorm,
            java.util.function.Consumer<Module> afterStep, String what) {
        compare(make, optimizer, loss, batches, maxGradNorm, CompileOptions.Level.NONE, TIGHT, afterStep,
                what + ", no passes");
        compare(make, optimizer, loss, batches, maxGradNorm, CompileOptions.Level.DEFAULT, TOL, afterStep, what);
    }

    private static void compare(LongFunction<Module> make, Function<List<Tensor>, Optimizer> optimizer,
            BiFunction<Tensor, Tensor, Tensor> loss, Tensor[][] batches, double maxGradNorm, CompileOptions.Level level,
            Reference.Tol tol, java.util.function.Consumer<Module> afterStep, String what) {
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
                    afterStep.accept(eager);
                    afterStep.accept(compiled);
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
            double[] want0 = e.getValue().toDoubleArray();
            double[] got0 = g.get(e.getKey()).toDoubleArray();
            if (e.getKey().endsWith("wk.bias")) {
                // attention's key bias: softmax does not see a shift of a row's scores, so its gradient is zero and
                // it stays at zero (plus rounding), which a checked comparison would refuse as indistinguishable
                Reference.assertClose(want0, got0, tol, what + ": parameter " + e.getKey());
            } else {
                Reference.assertCloseChecked(want0, got0, tol, what + ": parameter " + e.getKey());
            }
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

    /**
     * An optimizer that also holds a layer the loss never uses (listed first, so the step count must
     * come from the first parameter that is reached): the compiled step updates the MLP as the eager
     * step does, without and with clipping, and leaves the unused layer bit for bit as it was, as
     * AdamW's eager step does (no gradient, no decay); a capture that reaches no parameter is refused.
     */
    @Test
    void parametersTheLossDoesNotReachAreLeftAsAnEagerStepLeavesThem() {
        LongFunction<Module> mlp = seed -> new Sequential(new Linear(6, 16, true, ParamOptions.seeded(3)), Activation.relu(),
                new Linear(16, 3, true, ParamOptions.seeded(4)));
        for (double clip : new double[] {Double.POSITIVE_INFINITY, 0.05}) {
            try (Scope s = Scope.open(); Tensor x1 = randn(9, 6); Tensor x2 = randn(9, 6);
                 Module compiled = mlp.apply(0); Module eager = mlp.apply(0);
                 Linear unusedC = new Linear(6, 4, true, ParamOptions.seeded(5));
                 Linear unusedE = new Linear(6, 4, true, ParamOptions.seeded(5))) {
                Tensor[][] batches = {{x1, labels(9, 3, 1)}, {x2, labels(9, 3, 2)}};
                List<Tensor> pc = new java.util.ArrayList<>(unusedC.parameters());
                pc.addAll(compiled.parameters());
                List<Tensor> pe = new java.util.ArrayList<>(unusedE.parameters());
                pe.addAll(eager.parameters());
                double[] before = unusedC.parameters().get(0).toDoubleArray();
                CompileOptions.Builder o = CompileOptions.builder().verify(true);
                if (clip != Double.POSITIVE_INFINITY) {
                    o.maxGradNorm(clip);
                }
                String what = "unused layer, maxGradNorm " + clip;
                try (Optimizer oc = Adam.adamW().lr(1e-2).weightDecay(0.1).build(pc);
                     Optimizer oe = Adam.adamW().lr(1e-2).weightDecay(0.1).build(pe);
                     TrainingStep step = Graphs.compileTrainingStep(compiled, Losses::crossEntropy, oc, x1, batches[0][1],
                             o.build())) {
                    assertEquals(clip != Double.POSITIVE_INFINITY ? 1 : compiled.parameters().size(),
                            countUpdates(step.graph(), "optimizer"), step.graph().toString());
                    for (int k = 0; k < STEPS; k++) {
                        Tensor[] batch = batches[k % 2];
                        try (Tensor want = eagerStep(eager, oe, Losses::crossEntropy, batch, clip);
                             Tensor got = step.run(batch)) {
                            Reference.assertCloseChecked(want.toDoubleArray(), got.toDoubleArray(), TOL, what + " loss, step " + k);
                        }
                    }
                    assertEquals(STEPS, oc.stepCount(), what);
                    assertAllClose(eager, compiled, TOL, what + " after " + STEPS + " steps");
                    assertArrayEquals(before, unusedC.parameters().get(0).toDoubleArray(), what + ": the unused weight");
                    assertArrayEquals(unusedE.parameters().get(1).toDoubleArray(),
                            unusedC.parameters().get(1).toDoubleArray(), what + ": the unused bias, as eager left it");
                }
                if (clip == Double.POSITIVE_INFINITY) {
                    try (Optimizer only = Adam.adamW().lr(1e-2).build(unusedC.parameters())) {
                        CaptureException e = assertThrows(CaptureException.class, () -> Graphs.compileTrainingStep(compiled,
                                Losses::crossEntropy, only, x1, batches[0][1], CompileOptions.builder().build()).close());
                        assertTrue(e.getMessage().contains("depends on none of the optimizer's 2 parameters"), e.getMessage());
                    }
                }
            }
        }
    }

    /**
     * {@code returnModelOutput}: the step returns the model's output on the batch (the logits a
     * training accuracy is counted from) with the loss, equal to the eager forward's, and steps the
     * model as {@link TrainingStep#run} would; a step compiled without it refuses
     * {@code runWithOutput} before running anything.
     */
    @Test
    void aStepCompiledToReturnTheModelOutputReturnsTheEagerForwardsOutput() {
        LongFunction<Module> mlp = seed -> new Sequential(new Linear(6, 16, true, ParamOptions.seeded(3)), Activation.gelu(),
                new Linear(16, 3, true, ParamOptions.seeded(4)));
        try (Scope s = Scope.open(); Tensor x1 = randn(9, 6); Tensor x2 = randn(9, 6);
             Module compiled = mlp.apply(0); Module eager = mlp.apply(0);
             Optimizer oc = Adam.adamW().lr(1e-2).weightDecay(0.1).build(compiled.parameters());
             Optimizer oe = Adam.adamW().lr(1e-2).weightDecay(0.1).build(eager.parameters())) {
            Tensor[][] batches = {{x1, labels(9, 3, 1)}, {x2, labels(9, 3, 2)}};
            try (TrainingStep step = Graphs.compileTrainingStep(compiled, Losses::crossEntropy, oc, x1, batches[0][1],
                    CompileOptions.builder().verify(true).maxGradNorm(0.5).returnModelOutput(true).build())) {
                assertEquals(2, step.graph().outputs().size(), step.graph().toString());
                for (int k = 0; k < STEPS; k++) {
                    Tensor[] batch = batches[k % 2];
                    double[] logits;
                    try (Autograd.GradMode off = Autograd.noGrad(); Tensor y = eager.forward(batch[0])) {
                        logits = y.toDoubleArray(); // before the step, as the step's forward sees the weights
                    }
                    try (Tensor want = eagerStep(eager, oe, Losses::crossEntropy, batch, 0.5);
                         TrainingStep.Output got = step.runWithOutput(batch)) {
                        Reference.assertCloseChecked(want.toDoubleArray(), got.loss().toDoubleArray(), TOL, "loss, step " + k);
                        assertArrayEquals(new long[] {9, 3}, got.modelOutput().dims(), "the output's shape");
                        Reference.assertCloseChecked(logits, got.modelOutput().toDoubleArray(), TOL, "the output, step " + k);
                    }
                }
                assertEquals(STEPS, oc.stepCount());
                assertAllClose(eager, compiled, TOL, "after " + STEPS + " steps with the output returned");
                try (Tensor l = step.run(batches[0])) { // run() drops the output
                    assertTrue(Double.isFinite(l.item()));
                }
            }
            try (TrainingStep step = Graphs.compileTrainingStep(compiled, Losses::crossEntropy, oc, x1, batches[0][1])) {
                long steps = oc.stepCount();
                IllegalStateException e = assertThrows(IllegalStateException.class, () -> step.runWithOutput(batches[0]));
                assertTrue(e.getMessage().contains("returnModelOutput"), e.getMessage());
                assertEquals(steps, oc.stepCount(), "the refused call ran no step");
            }
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

    /** The number of layout conversions of {@code g}: transposing views into NHWC ({@code [0]}) and back to NCHW ({@code [1]}). */
    static int[] layoutConversions(Graph g) {
        int[] n = new int[2];
        for (Node node : g.nodes()) {
            if (node instanceof Node.View v && (v.kind().equals("nhwc") || v.kind().equals("nchw"))) {
                n[v.kind().equals("nhwc") ? 0 : 1]++;
            }
        }
        return n;
    }

    /** The layouts of the convolution, batch-norm and pooling nodes of {@code g} (forward and backward), by op name. */
    static Map<String, java.util.Set<dev.cortado.ops.DataLayout>> layouts(Graph g) {
        Map<String, java.util.Set<dev.cortado.ops.DataLayout>> m = new java.util.TreeMap<>();
        for (Node node : g.nodes()) {
            if (!(node instanceof Node.OpCall c)) {
                continue;
            }
            Object a = c.attrs();
            dev.cortado.ops.DataLayout l = null;
            if (a instanceof Convolution.ConvAttrs ca) {
                l = ca.options().layout();
            } else if (a instanceof Convolution.BackwardDataAttrs ba) {
                l = ba.options().layout();
            } else if (a instanceof Convolution.BackwardWeightAttrs ba) {
                l = ba.options().layout();
            } else if (a instanceof dev.cortado.ops.BatchNorm.BatchNormAttrs ba) {
                l = ba.layout();
            } else if (a instanceof dev.cortado.ops.Pooling.PoolOptions po) {
                l = po.layout();
            } else if (a instanceof dev.cortado.ops.Pooling.AdaptiveOptions ao) {
                l = ao.layout();
            }
            if (l != null) {
                m.computeIfAbsent(c.op().name(), k -> java.util.EnumSet.noneOf(dev.cortado.ops.DataLayout.class)).add(l);
            }
        }
        return m;
    }

    /**
     * A CNN's training step in NHWC: layout propagation makes the backward ops (conv backward data
     * and weight, the fused batch-norm + ReLU backward, max-pool backward) members of the forward's
     * chain, so activations and their gradients stay NHWC from the images to the flatten and back:
     * three transposes in the whole step (the images in, the last pool's output out to the flatten,
     * its gradient in). Four compiled steps (AdamW, clipped) against the eager NCHW steps: losses,
     * parameters, batch-norm buffers and optimizer state within 1e-4 relative + 1e-5 absolute (the
     * NHWC kernels sum in another order, and batch norm in training mode amplifies that a little).
     * The pass without its backward members (what it was before) leaves the pools and every backward
     * op in NCHW: the pools' indices are read by the backward, and the forward chain between the two
     * pools pays a transpose for each activation the backward reads (four in all).
     */
    @Test
    void cnnTrainingStepRunsInNhwcWithThreeTransposes() {
        Convolution.ConvOptions same = Convolution.ConvOptions.builder().padding(1).build();
        LongFunction<Module> cnn = seed -> {
            ParamOptions p = ParamOptions.seeded(7);
            return new Sequential(
                    new Conv2d(3, 6, new long[] {3, 3}, same, false, p), new BatchNorm2d(6), Activation.relu(),
                    new Pool.MaxPool2d(2),
                    new Conv2d(6, 8, new long[] {3, 3}, same, true, p), Activation.relu(),
                    new Conv2d(8, 8, new long[] {3, 3}, same, false, p), new BatchNorm2d(8), Activation.relu(),
                    new Pool.MaxPool2d(2),
                    new Flatten(), new Linear(8 * 3 * 3, 10, true, p));
        };
        try (Scope s = Scope.open(); Tensor x1 = randn(6, 3, 13, 13); Tensor x2 = randn(6, 3, 13, 13)) {
            Tensor y1 = labels(6, 10, 5);
            Tensor y2 = labels(6, 10, 6);
            Tensor[][] batches = {{x1, y1}, {x2, y2}};
            compare(cnn, ps -> Adam.adamW().lr(1e-2).weightDecay(0.05).build(ps), Losses::crossEntropy, batches, 1.0,
                    CompileOptions.Level.DEFAULT, TOL, m -> { }, "NHWC CNN, AdamW, clipped");
            try (Module m = cnn.apply(0); Optimizer opt = Adam.adamW().lr(1e-2).build(m.parameters())) {
                m.train();
                CompileOptions o = CompileOptions.builder().maxGradNorm(1.0).verify(true).build();
                try (TrainingStep step = Graphs.compileTrainingStep(m, Losses::crossEntropy, opt, x1, y1, o)) {
                    Graph g = step.graph();
                    assertArrayEquals(new int[] {2, 1}, layoutConversions(g), "transposes in and out:\n" + g);
                    Map<String, java.util.Set<dev.cortado.ops.DataLayout>> l = layouts(g);
                    for (String op : List.of("conv", "conv_backward_data", "conv_backward_weight", "batch_norm_relu_training",
                            "batch_norm_relu_backward", "max_pool", "max_pool_backward")) {
                        assertEquals(java.util.EnumSet.of(dev.cortado.ops.DataLayout.NHWC), l.get(op), op + " in:\n" + g);
                    }
                    // the same pipeline with a layout pass that leaves the backward ops out: nothing is NHWC
                    List<Pass> forwardOnly = Graphs.passes(o).stream()
                            .map(p -> p instanceof LayoutPropagation ? new LayoutPropagation(2, false) : p).toList();
                    Graph h = step.capturedGraph();
                    for (Pass p : forwardOnly) {
                        Graph next = p.apply(h).verify();
                        if (h != step.capturedGraph()) {
                            h.close();
                        }
                        h = next;
                    }
                    try (Graph forwardOnlyGraph = h) {
                        // conv, relu, conv, batch norm + relu (no pool between them) still make a chain, whose
                        // activations the backward reads: one transpose in and three out, and every backward op NCHW
                        assertArrayEquals(new int[] {1, 3}, layoutConversions(forwardOnlyGraph), forwardOnlyGraph.toString());
                        Map<String, java.util.Set<dev.cortado.ops.DataLayout>> f = layouts(forwardOnlyGraph);
                        for (String op : List.of("conv_backward_data", "conv_backward_weight", "batch_norm_relu_backward",
                                "max_pool", "max_pool_backward")) {
                            assertEquals(java.util.EnumSet.of(dev.cortado.ops.DataLayout.NCHW), f.get(op), op);
                        }
                    }
                }
            }
        }
    }

    /**
     * The whole ViT's training step as one graph (patch embedding, class token, positions, the
     * blocks' layer norms, attention and GELU MLPs, the final norm, the head, the loss, the backward,
     * clipping and the optimizer's update nodes) against eager steps, with the default passes and with
     * none: the class token's {@code select} and the mean pooling's {@code narrow} have their
     * backward as {@code index_add} into zeros (an op, so it is captured), the attention and layer
     * norm backward ops are in the graph. The SLAB options too: linear attention with its
     * depthwise convolution, and PRepBN (BatchNorm1d in training mode with its running statistics;
     * LayerNorm's share, a host number of the module, is a constant of the graph: 0.75 here).
     */
    @Test
    void visionTransformerTrainingStepMatchesEager() {
        java.util.function.Function<VisionTransformer.Builder, LongFunction<Module>> vit =
                b -> seed -> b.params(ParamOptions.seeded(37)).build();
        // SGD: the key projection's bias has a zero gradient (softmax does not see a shift of all scores),
        // which Adam would turn from rounding noise into steps of the learning rate's size
        Function<List<Tensor>, Optimizer> sgd = ps -> Sgd.builder().lr(0.05).momentum(0.9).weightDecay(1e-3).build(ps);
        try (Scope s = Scope.open(); Tensor x1 = randn(3, 2, 12, 12); Tensor x2 = randn(3, 2, 12, 12)) {
            Tensor[][] batches = {{x1, labels(3, 5, 7)}, {x2, labels(3, 5, 8)}};
            LongFunction<Module> classToken = vit.apply(VisionTransformer.builder(12, 4).inChannels(2).dim(16).depth(2)
                    .heads(2).classes(5));
            compare(classToken, sgd, Losses::crossEntropy, batches, 1.0, "ViT (class token), SGD momentum, clipped");
            try (Module m = classToken.apply(0); Optimizer opt = sgd.apply(m.parameters())) {
                m.train();
                try (TrainingStep step = Graphs.compileTrainingStep(m, Losses::crossEntropy, opt, x1, batches[0][1])) {
                    String text = step.graph().toString();
                    for (String op : List.of("scaled_dot_product_attention_backward(", "layer_norm_backward(",
                            "index_add(", "conv_backward_weight(", "update.optimizer(")) {
                        assertTrue(text.contains(op), op + " in:\n" + text);
                    }
                }
            }
            compare(vit.apply(VisionTransformer.builder(12, 4).inChannels(2).dim(16).depth(1).heads(4).classes(5)
                    .pooling(VisionTransformer.Pooling.MEAN).positions(VisionTransformer.Positions.SINCOS).layerScale(0.1)),
                    sgd, Losses::crossEntropy, batches, Double.POSITIVE_INFINITY, "ViT (mean pooling, sin-cos, layer scale)");
            LongFunction<Module> slab = seed -> {
                Module m = VisionTransformer.builder(12, 4).inChannels(2).dim(16).depth(2).heads(2).classes(5)
                        .attention(VisionTransformer.AttentionKind.SLAB_LINEAR).slabKernel(3).prepBatchNorm(4)
                        .params(ParamOptions.seeded(37)).build();
                dev.cortado.nn.ProgressiveRepBN.stepAll(m); // LayerNorm's share 0.75: both branches train
                return m;
            };
            compare(slab, ps -> Adam.adamW().lr(3e-3).weightDecay(0.05).build(ps), Losses::crossEntropy, batches, 1.0, "ViT (SLAB linear attention, PRepBN), AdamW, clipped");
            // the schedule goes on between steps: LayerNorm's share 0.875, 0.75, 0.625, 0.5 at the runs
            // of one compiled step (it reads the share from its buffer at every run; a constant of the
            // graph would keep 0.875)
            LongFunction<Module> stepped = seed -> {
                Module m = VisionTransformer.builder(12, 4).inChannels(2).dim(16).depth(2).heads(2).classes(5)
                        .attention(VisionTransformer.AttentionKind.SLAB_LINEAR).slabKernel(3).prepBatchNorm(8)
                        .params(ParamOptions.seeded(37)).build();
                dev.cortado.nn.ProgressiveRepBN.stepAll(m);
                return m;
            };
            // (SGD: AdamW's normalization would magnify the last-bit differences of the patch convolution's
            // autotuned algorithms in the parameters whose gradients are near zero)
            compare(stepped, ps -> Sgd.builder().lr(0.05).momentum(0.9).build(ps), Losses::crossEntropy, batches, 1.0,
                    dev.cortado.nn.ProgressiveRepBN::stepAll, "ViT (SLAB, PRepBN stepped after every step), SGD, clipped");
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

    static final int LM_VOCAB = 13;

    /** Cross-entropy of a language model's logits [batch, time, vocab] against next tokens [batch, time]. */
    static BiFunction<Tensor, Tensor, Tensor> lmLoss(int vocab) {
        return (logits, t) -> {
            try (Tensor flat = logits.reshape(-1, vocab); Tensor ft = t.reshape(-1)) {
                return Losses.crossEntropy(flat, ft);
            }
        };
    }

    /** A 3-layer SwiGLU transformer (dim 32, 4 heads over 2 key-value heads, context 24) over {@link #LM_VOCAB} tokens. */
    static CausalLanguageModel smallLm(long seed) {
        return new CausalLanguageModel(new CausalLanguageModel.Config(LM_VOCAB, 32, 3, 4, 2, 96, 24, 0.0),
                ParamOptions.seeded(seed));
    }

    /** A batch of 3 x 24 random tokens below {@link #LM_VOCAB}. */
    static Tensor lmTokens(long seed) {
        java.util.SplittableRandom r = new java.util.SplittableRandom(seed);
        long[] ids = new long[3 * 24];
        for (int i = 0; i < ids.length; i++) {
            ids[i] = r.nextInt(LM_VOCAB);
        }
        return Tensor.of(ids, 3, 24);
    }

    /**
     * Free recomputation (on by default): a SwiGLU transformer's gradients graph keeps neither
     * {@code silu(gate)}, {@code silu(gate) * up} nor the RMS-normalized inputs from the forward to
     * the backward but computes them again from values the backward reads anyway, so its planned
     * peak drops and its eager peak by the same plan too; loss and gradients are unchanged.
     */
    @Test
    void freeRecomputationLowersTheTransformerPeakAndKeepsTheGradients() {
        BiFunction<Tensor, Tensor, Tensor> loss = lmLoss(LM_VOCAB);
        try (Scope s = Scope.open(); CausalLanguageModel lm = smallLm(43)) {
            Tensor x = lmTokens(41);
            Tensor y = lmTokens(42);
            CompileOptions options = CompileOptions.builder().verify(true).build();
            try (CompiledFunction f = Graphs.compileGradients(lm, loss, x, y, options)) {
                List<Pass> passes = Graphs.passes(options);
                assertEquals("recompute-free-activations", passes.get(passes.size() - 1).name(), passes.toString());
                assertTrue(Graphs.passes(CompileOptions.builder().recomputeActivations(false).build()).stream()
                        .noneMatch(p -> p.name().equals("recompute-free-activations")), "the option turns it off");
                Graph kept = f.capturedGraph();
                boolean owned = false;
                for (Pass p : passes.subList(0, passes.size() - 1)) {
                    Graph next2 = p.apply(kept).verify();
                    if (next2 != kept) {
                        if (owned) {
                            kept.close();
                        }
                        kept = next2;
                        owned = true;
                    }
                }
                try (Graph freed = ActivationCheckpointing.free().apply(kept).verify()) {
                    MemoryPlan before = MemoryPlan.plan(kept);
                    MemoryPlan after = MemoryPlan.plan(freed);
                    assertTrue(after.plannedPeakBytes() < 0.85 * before.plannedPeakBytes(), before + "\n" + after);
                    assertTrue(after.eagerPeakBytes() < before.eagerPeakBytes(), before + "\n" + after);
                    long recomputed = freed.nodes().size() - kept.nodes().size();
                    assertTrue(recomputed >= 3, recomputed + " nodes recomputed:\n" + freed);
                    try (Executable a = new Executable(kept); Executable b = new Executable(freed)) {
                        Tensor[] want = a.run(new Tensor[] {x, y});
                        Tensor[] got = b.run(new Tensor[] {x, y});
                        assertEquals(want.length, got.length);
                        for (int i = 0; i < want.length; i++) {
                            Reference.assertCloseChecked(want[i].toDoubleArray(), got[i].toDoubleArray(), TOL,
                                    "output " + i + " with free recomputation");
                        }
                    }
                } finally {
                    if (owned) {
                        kept.close();
                    }
                }
            }
        }
    }

    /**
     * Under a budget, segments are computed again: a projection's product ({@code matmul}) from the
     * RMS-normalized block input, recomputed from the block input the backward keeps anyway. The
     * planned peak goes well below the default compile's, more products run, and the loss and
     * gradients are the default compile's.
     */
    @Test
    void aBudgetRecomputesProjectionSegmentsAndKeepsTheGradients() {
        BiFunction<Tensor, Tensor, Tensor> loss = lmLoss(LM_VOCAB);
        try (Scope s = Scope.open(); CausalLanguageModel lm = smallLm(53)) {
            Tensor x = lmTokens(47);
            Tensor y = lmTokens(48);
            CompileOptions plain = CompileOptions.builder().verify(true).build();
            try (CompiledFunction f = Graphs.compileGradients(lm, loss, x, y, plain)) {
                long budget = f.memoryPlan().plannedPeakBytes() * 3 / 4;
                try (CompiledFunction c = Graphs.compileGradients(lm, loss, x, y,
                        CompileOptions.builder().verify(true).memoryBudget(budget).build())) {
                    assertTrue(c.memoryPlan().plannedPeakBytes() < budget * 1.05,
                            "budget " + budget + ":\n" + f.memoryPlan() + "\n" + c.memoryPlan());
                    long products = f.graph().nodes().stream()
                            .filter(n -> n instanceof Node.OpCall o && o.op().name().equals("matmul")).count();
                    long recomputedProducts = c.graph().nodes().stream()
                            .filter(n -> n instanceof Node.OpCall o && o.op().name().equals("matmul")).count();
                    assertTrue(recomputedProducts > products, products + " -> " + recomputedProducts + " products:\n" + c.graph());
                    Tensor[] want = f.applyAll(x, y);
                    Tensor[] got = c.applyAll(x, y);
                    for (int i = 0; i < want.length; i++) {
                        Reference.assertCloseChecked(want[i].toDoubleArray(), got[i].toDoubleArray(), TOL,
                                "output " + i + " with recomputed segments");
                    }
                }
            }
        }
    }
}
