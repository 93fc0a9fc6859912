package dev.cortado.graph;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.nn.Activation;
import dev.cortado.nn.BatchNorm2d;
import dev.cortado.nn.Conv2d;
import dev.cortado.nn.Flatten;
import dev.cortado.nn.Linear;
import dev.cortado.nn.Losses;
import dev.cortado.nn.ParamOptions;
import dev.cortado.nn.Sequential;
import dev.cortado.ops.BatchNorm;
import dev.cortado.ops.Convolution;
import dev.cortado.ops.Elementwise;
import dev.cortado.ops.Generator;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import dev.cortado.testing.Reference;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.function.Function;
import org.junit.jupiter.api.Test;

/**
 * The training-graph fusions: batch norm + ReLU ({@link BatchNormReluFusion}) and the attention
 * pattern ({@link AttentionFusion}). Each rewritten graph is verified, must contain the fused op and
 * none of the ops it replaced, and must give the unrewritten graph's results (forward and, for
 * training graphs, every gradient) on fresh random inputs; patterns that differ must be left alone.
 * float32; batch norm + ReLU runs the same kernels in the same order (tolerance 1e-5 relative), the
 * fused attention and the NHWC convolutions sum in another order (1e-4 relative + 1e-5 absolute;
 * gradients through the fused attention backward 1e-3 + 1e-4).
 */
class FusionPassesTest {
    private static final Generator GEN = Generator.seeded(77);
    private static final Reference.Tol EXACTISH = new Reference.Tol(1e-5, 1e-6);
    private static final Reference.Tol REORDERED = new Reference.Tol(1e-4, 1e-5);
    /**
     * Gradients through the fused attention backward: dQ and dK accumulate over the keys and the
     * queries in another order and the projection weights' gradients sum them over the batch with
     * cancellation (elements near 1e-2 move by about 1e-5).
     */
    private static final Reference.Tol REORDERED_GRADIENTS = new Reference.Tol(1e-3, 1e-4);

    private static Tensor randn(long... dims) {
        return GEN.normal(0, 1, DType.FLOAT32, Device.CPU, dims);
    }

    private static int count(Graph g, String op) {
        int n = 0;
        for (Node node : g.nodes()) {
            if (node.label().equals(op)) {
                n++;
            }
        }
        return n;
    }

    /**
     * Runs both graphs on the same inputs from the same parameters (a training step's graph updates
     * them in place; they are put back after) and compares every output and the parameters each
     * run leaves.
     */
    private static void sameResults(Graph want, Graph got, Reference.Tol tol, String what, Tensor... inputs) {
        try (Executable a = new Executable(want); Executable b = new Executable(got);
             ParameterSnapshot start = ParameterSnapshot.of(want)) {
            Tensor[] x = a.run(inputs);
            Tensor[] y;
            try (ParameterSnapshot afterA = ParameterSnapshot.of(want)) {
                start.restore();
                y = b.run(inputs);
                try (ParameterSnapshot afterB = ParameterSnapshot.of(want)) {
                    start.restore();
                    for (int i = 0; i < afterA.values().size(); i++) {
                        Reference.assertClose(afterA.values().get(i).toDoubleArray(), afterB.values().get(i).toDoubleArray(),
                                tol, what + ", parameter " + want.parameters().get(i) + " after the run");
                    }
                }
            }
            try {
                assertEquals(x.length, y.length, what);
                for (int i = 0; i < x.length; i++) {
                    assertEquals(x[i].shape(), y[i].shape(), what + ", output " + i);
                    Reference.assertCloseChecked(x[i].toDoubleArray(), y[i].toDoubleArray(), tol, what + ", output " + i);
                }
            } finally {
                for (Tensor t : x) {
                    t.close();
                }
                for (Tensor t : y) {
                    t.close();
                }
            }
        }
    }

    private static Tensor labels(long n, int classes) {
        long[] ids = new long[(int) n];
        java.util.Random r = new java.util.Random(n * 31 + classes);
        for (int i = 0; i < ids.length; i++) {
            ids[i] = r.nextInt(classes);
        }
        return Tensor.of(ids, n);
    }

    // ------------------------------------------------------------------ batch norm + ReLU

    @Test
    void batchNormReluFusesForwardAndBackwardOfATrainingGraph() {
        ParamOptions p = ParamOptions.seeded(3);
        Convolution.ConvOptions same = Convolution.ConvOptions.builder().padding(1).build();
        try (Scope s = Scope.open();
             Sequential cnn = new Sequential(new Conv2d(2, 4, new long[] {3, 3}, same, false, p), new BatchNorm2d(4),
                     Activation.relu(), new Conv2d(4, 3, new long[] {3, 3}, same, false, p), new BatchNorm2d(3),
                     Activation.relu(), new Flatten(), new Linear(3 * 5 * 5, 4, true, p));
             Tensor x = randn(3, 2, 5, 5); Tensor y = labels(3, 4); Tensor x2 = randn(3, 2, 5, 5)) {
            cnn.train();
            CompileOptions none = CompileOptions.builder().level(CompileOptions.Level.NONE).build();
            try (dev.cortado.optim.Optimizer opt = dev.cortado.optim.Sgd.builder().lr(0.1).build(cnn.parameters());
                 TrainingStep f = Graphs.compileTrainingStep(cnn, Losses::crossEntropy, opt, x, y, none)) {
                Graph g = f.capturedGraph().verify();
                assertEquals(2, count(g, "batch_norm_training"), g.toString());
                try (Graph fused = new BatchNormReluFusion().apply(g).verify()) {
                    assertEquals(2, count(fused, "batch_norm_relu_training"), fused.toString());
                    assertEquals(2, count(fused, "batch_norm_relu_backward"), fused.toString());
                    for (String gone : new String[] {"batch_norm_training", "batch_norm_backward", "relu", "relu_grad"}) {
                        assertEquals(0, count(fused, gone), gone + " left in\n" + fused);
                    }
                    assertTrue(fused.nodes().size() <= g.nodes().size() - 4, "4 nodes fewer:\n" + fused);
                    sameResults(g, fused, EXACTISH, "conv-bn-relu CNN, loss and gradients", x2, y);
                    sameResults(g, fused, EXACTISH, "conv-bn-relu CNN, example batch", x, y);
                }
            }
        }
    }

    @Test
    void batchNormReluLeavesOtherPatternsAlone() {
        BatchNorm.BatchNormAttrs attrs = BatchNorm.BatchNormAttrs.defaults();
        try (Scope s = Scope.open(); Tensor w = randn(3).requiresGrad(true); Tensor b = randn(3).requiresGrad(true);
             Tensor x = randn(4, 3, 2, 2); Tensor x2 = randn(4, 3, 2, 2)) {
            Map<String, Tensor> params = new LinkedHashMap<>();
            params.put("w", w);
            params.put("b", b);
            CompileOptions none = CompileOptions.builder().level(CompileOptions.Level.NONE).build();
            // the pre-activation is read twice (relu(y) + y): the forward must stay unfused
            Function<Tensor[], Tensor> shared = in -> {
                Tensor[] bn = BatchNorm.training(in[0], w, b, null, null, attrs);
                return Elementwise.add(Elementwise.relu(bn[0]), bn[0]).mul(in[0]).sum();
            };
            // a GELU after the batch norm is not a ReLU
            Function<Tensor[], Tensor> gelu = in -> {
                Tensor[] bn = BatchNorm.training(in[0], w, b, null, null, attrs);
                return Elementwise.gelu(bn[0]).mul(in[0]).sum();
            };
            // the fusable one, as a check that the functions above differ only where they should
            Function<Tensor[], Tensor> plain = in -> {
                Tensor[] bn = BatchNorm.training(in[0], w, b, null, null, attrs);
                return Elementwise.relu(bn[0]).mul(in[0]).sum();
            };
            for (Object[] c : new Object[][] {{shared, 0}, {gelu, 0}, {plain, 1}}) {
                @SuppressWarnings("unchecked")
                Function<Tensor[], Tensor> fn = (Function<Tensor[], Tensor>) c[0];
                try (CompiledFunction f = Graphs.compileGradients(fn, new Tensor[] {x}, params, none)) {
                    Graph g = f.capturedGraph();
                    try (Graph fused = new BatchNormReluFusion().apply(g).verify()) {
                        int want = (Integer) c[1];
                        assertEquals(want, count(fused, "batch_norm_relu_training"), fused.toString());
                        assertEquals(want, count(fused, "batch_norm_relu_backward"), fused.toString());
                        assertEquals(1 - want, count(fused, "batch_norm_training"), fused.toString());
                        sameResults(g, fused, EXACTISH, "bn pattern " + want, x2);
                    }
                }
            }
        }
    }

    // ------------------------------------------------------------------ attention

    /** softmax(q kᵀ * scale + mask) v written op by op; q, k, v [B, H, L, D]. */
    private static Tensor attention(Tensor q, Tensor k, Tensor v, double scale, Tensor mask) {
        Tensor scores = q.matmul(k.transpose(-2, -1)).mul(scale);
        if (mask != null) {
            scores = scores.add(mask);
        }
        return scores.softmax(-1).matmul(v);
    }

    /** Captures {@code fn} of {q, k, v, mask?}, rewrites it, checks the op count and the results on fresh inputs. */
    private static void checkAttention(Function<Tensor[], Tensor[]> fn, Tensor[] examples, boolean fused, String what) {
        CompileOptions none = CompileOptions.builder().level(CompileOptions.Level.NONE).build();
        try (CompiledFunction f = Graphs.compileAll(fn, examples, none)) {
            Graph g = f.capturedGraph().verify();
            try (Graph opt = new AttentionFusion().apply(g).verify()) {
                assertEquals(fused ? 1 : 0, count(opt, "scaled_dot_product_attention"), what + ":\n" + opt);
                assertEquals(fused ? 0 : 1, count(opt, "softmax") + count(opt, "log_softmax"), what + ":\n" + opt);
                Tensor[] fresh = new Tensor[examples.length];
                try (Scope s = Scope.open()) {
                    for (int i = 0; i < fresh.length; i++) {
                        fresh[i] = examples[i].dtype() == DType.BOOL ? examples[i] : randn(examples[i].dims());
                    }
                    sameResults(g, opt, REORDERED, what, fresh);
                    sameResults(g, opt, REORDERED, what + ", example inputs", examples);
                }
            }
        }
    }

    @Test
    void attentionPatternBecomesTheFusedOp() {
        double scale = 1 / Math.sqrt(4);
        try (Scope s = Scope.open(); Tensor q = randn(2, 3, 5, 4); Tensor k = randn(2, 3, 6, 4); Tensor v = randn(2, 3, 6, 7);
             Tensor mask = randn(1, 1, 5, 6); Tensor sq = randn(2, 3, 6, 4); Tensor bshd = randn(2, 6, 3, 4)) {
            checkAttention(in -> new Tensor[] {attention(in[0], in[1], in[2], scale, in[3])}, new Tensor[] {q, k, v, mask},
                    true, "scaled, additive mask");
            checkAttention(in -> new Tensor[] {attention(in[0], in[1], in[2], scale, null)}, new Tensor[] {q, k, v},
                    true, "scaled, no mask");
            checkAttention(in -> new Tensor[] {in[0].matmul(in[1].transpose(-2, -1)).div(2.0).softmax(-1).matmul(in[2])},
                    new Tensor[] {q, k, v}, true, "divided by sqrt(d)");
            checkAttention(in -> new Tensor[] {in[0].matmul(in[1].transpose(-2, -1)).softmax(3).matmul(in[2])},
                    new Tensor[] {q, k, v}, true, "no scale");
            // [B, L, H, D] inputs permuted to heads-first (what reshape + transpose of a projection gives)
            checkAttention(in -> {
                Tensor qh = in[0].permute(0, 2, 1, 3);
                Tensor kh = in[1].permute(0, 2, 1, 3);
                return new Tensor[] {attention(qh, kh, kh, scale, null)};
            }, new Tensor[] {bshd, bshd}, true, "BSHD views");
            // a bool mask through where(mask, scores, -inf), as exported models write it
            try (Tensor keep = Tensor.of(new boolean[] {true, true, false, true, true, false}, 1, 1, 1, 6)) {
                checkAttention(in -> {
                    Tensor sc = in[0].matmul(in[1].transpose(-2, -1)).mul(scale);
                    try (Tensor ninf = Tensor.scalar(Double.NEGATIVE_INFINITY, DType.FLOAT32, Device.CPU)) {
                        return new Tensor[] {Elementwise.where(in[3], sc, ninf).softmax(-1).matmul(in[2])};
                    }
                }, new Tensor[] {q, k, v, keep}, true, "bool mask by where");
            }
            // a causal mask made inside the function: a constant, recognized as the causal option
            Function<Tensor[], Tensor[]> causal = in -> {
                float[] m = new float[36];
                for (int i = 0; i < 6; i++) {
                    for (int j = 0; j < 6; j++) {
                        m[i * 6 + j] = j <= i ? 0f : Float.NEGATIVE_INFINITY;
                    }
                }
                try (Tensor cm = Tensor.of(m, 6, 6)) {
                    return new Tensor[] {attention(in[0], in[1], in[2], scale, cm)};
                }
            };
            checkAttention(causal, new Tensor[] {sq, k, v}, true, "causal constant mask");
            CompileOptions none = CompileOptions.builder().level(CompileOptions.Level.NONE).build();
            try (CompiledFunction f = Graphs.compileAll(causal, new Tensor[] {sq, k, v}, none);
                 Graph opt = new AttentionFusion().apply(f.capturedGraph())) {
                Node sdpa = opt.nodes().stream().filter(n -> n.label().equals("scaled_dot_product_attention")).findFirst()
                        .orElseThrow();
                assertTrue(sdpa.attributes().contains("causal=true") && sdpa.inputs().size() == 3, opt.toString());
            }
        }
    }

    @Test
    void attentionLikePatternsThatDifferStayUnfused() {
        double scale = 0.5;
        try (Scope s = Scope.open(); Tensor q = randn(2, 3, 5, 4); Tensor k = randn(2, 3, 6, 4); Tensor v = randn(2, 3, 6, 7);
             Tensor headScale = randn(1, 3, 1, 1); Tensor q3 = randn(3, 5, 4); Tensor k3 = randn(3, 6, 4);
             Tensor v3 = randn(3, 6, 7); Tensor kk = randn(2, 3, 5, 4); Tensor v5 = randn(2, 3, 5, 7)) {
            // softmax over another axis
            checkAttention(in -> new Tensor[] {in[0].matmul(in[1].transpose(-2, -1)).softmax(2).matmul(in[2])},
                    new Tensor[] {q, kk, v5}, false, "softmax over the queries");
            // the scores are returned too
            checkAttention(in -> {
                Tensor sc = in[0].matmul(in[1].transpose(-2, -1)).mul(scale);
                return new Tensor[] {sc.softmax(-1).matmul(in[2]), sc};
            }, new Tensor[] {q, k, v}, false, "scores returned");
            // the probabilities are returned too
            checkAttention(in -> {
                Tensor pr = in[0].matmul(in[1].transpose(-2, -1)).mul(scale).softmax(-1);
                return new Tensor[] {pr.matmul(in[2]), pr};
            }, new Tensor[] {q, k, v}, false, "probabilities returned");
            // a per-head scale tensor is not a scalar scale
            checkAttention(in -> new Tensor[] {in[0].matmul(in[1].transpose(-2, -1)).mul(in[3]).softmax(-1).matmul(in[2])},
                    new Tensor[] {q, k, v, headScale}, false, "per-head scale");
            // an op between the scores and the softmax
            checkAttention(in -> new Tensor[] {in[0].matmul(in[1].transpose(-2, -1)).tanh().softmax(-1).matmul(in[2])},
                    new Tensor[] {q, k, v}, false, "tanh on the scores");
            // log-softmax
            checkAttention(in -> new Tensor[] {in[0].matmul(in[1].transpose(-2, -1)).logSoftmax(-1).matmul(in[2])},
                    new Tensor[] {q, k, v}, false, "log-softmax");
            // 3-d operands (one head, no head axis)
            checkAttention(in -> new Tensor[] {in[0].matmul(in[1].transpose(-2, -1)).softmax(-1).matmul(in[2])},
                    new Tensor[] {q3, k3, v3}, false, "3-d operands");
            // the probabilities multiply v from the right
            checkAttention(in -> new Tensor[] {in[2].transpose(-2, -1).matmul(in[0].matmul(in[1].transpose(-2, -1))
                    .softmax(-1).transpose(-2, -1))}, new Tensor[] {q, k, v}, false, "v on the left");
        }
    }

    @Test
    void attentionInATrainingGraphFusesForwardAndBackward() {
        long b = 2;
        long l = 5;
        long h = 2;
        long d = 3;
        long e = h * d;
        try (Scope s = Scope.open(); Tensor wq = randn(e, e).requiresGrad(true); Tensor wk = randn(e, e).requiresGrad(true);
             Tensor wv = randn(e, e).requiresGrad(true); Tensor x = randn(b, l, e); Tensor x2 = randn(b, l, e);
             Tensor mask = randn(1, 1, l, l)) {
            Map<String, Tensor> params = new LinkedHashMap<>();
            params.put("wq", wq);
            params.put("wk", wk);
            params.put("wv", wv);
            Function<Tensor, Tensor> heads = t -> t.reshape(b, l, h, d).permute(0, 2, 1, 3);
            Function<Tensor[], Tensor> masked = in -> {
                Tensor q = heads.apply(in[0].matmul(wq));
                Tensor k = heads.apply(in[0].matmul(wk));
                Tensor v = heads.apply(in[0].matmul(wv));
                Tensor o = attention(q, k, v, 1 / Math.sqrt(d), in[1]);
                return o.mul(o).sum();
            };
            Function<Tensor[], Tensor> plain = in -> {
                Tensor q = heads.apply(in[0].matmul(wq));
                Tensor k = heads.apply(in[0].matmul(wk));
                Tensor v = heads.apply(in[0].matmul(wv));
                Tensor o = q.matmul(k.transpose(-2, -1)).softmax(-1).matmul(v);
                return o.mul(o).sum();
            };
            CompileOptions none = CompileOptions.builder().level(CompileOptions.Level.NONE).build();
            for (Object[] c : new Object[][] {{masked, new Tensor[] {x, mask}, new Tensor[] {x2, mask}},
                {plain, new Tensor[] {x}, new Tensor[] {x2}}}) {
                @SuppressWarnings("unchecked")
                Function<Tensor[], Tensor> fn = (Function<Tensor[], Tensor>) c[0];
                try (CompiledFunction f = Graphs.compileGradients(fn, (Tensor[]) c[1], params, none)) {
                    Graph g = f.capturedGraph().verify();
                    assertEquals(1, count(g, "softmax_backward"), g.toString());
                    try (Graph opt = new AttentionFusion().apply(g).verify()) {
                        assertEquals(1, count(opt, "scaled_dot_product_attention"), opt.toString());
                        assertEquals(1, count(opt, "scaled_dot_product_attention_backward"), opt.toString());
                        assertEquals(0, count(opt, "softmax") + count(opt, "softmax_backward"), opt.toString());
                        sameResults(g, opt, REORDERED_GRADIENTS, "attention training graph, loss and gradients",
                                (Tensor[]) c[2]);
                        sameResults(g, opt, REORDERED_GRADIENTS, "attention training graph, example", (Tensor[]) c[1]);
                    }
                }
            }
        }
    }

    // ------------------------------------------------------------------ layout propagation

    private static int countViews(Graph g, String kind) {
        return count(g, "view." + kind);
    }

    /** The MNIST CNN (eval mode) and a small ResNet: the conv chain runs in NHWC between one transpose in and one out. */
    @Test
    void layoutPropagationKeepsConvolutionChainsInNhwc() {
        ParamOptions p = ParamOptions.seeded(5);
        Convolution.ConvOptions same = Convolution.ConvOptions.builder().padding(1).build();
        try (Scope s = Scope.open();
             Sequential cnn = new Sequential(
                     new Conv2d(1, 4, new long[] {3, 3}, same, false, p), new BatchNorm2d(4), Activation.relu(),
                     new dev.cortado.nn.Pool.MaxPool2d(2),
                     new Conv2d(4, 6, new long[] {3, 3}, same, false, p), new BatchNorm2d(6), Activation.relu(),
                     new dev.cortado.nn.Pool.MaxPool2d(2),
                     new Flatten(), new Linear(6 * 7 * 7, 5, true, p));
             dev.cortado.models.ResNet resnet = dev.cortado.models.ResNet.builder(dev.cortado.models.ResNet.Depth.R18)
                     .smallImages(true).width(4).inChannels(2).classes(3).params(ParamOptions.seeded(6)).build();
             Tensor img = randn(2, 1, 28, 28); Tensor img2 = randn(2, 1, 28, 28);
             Tensor small = randn(2, 2, 8, 8); Tensor small2 = randn(2, 2, 8, 8)) {
            for (Object[] c : new Object[][] {{cnn, img, img2, 2}, {resnet, small, small2, 20}}) {
                dev.cortado.nn.Module m = (dev.cortado.nn.Module) c[0];
                m.eval();
                PassesOnModelsTest.randomizeRunningStatistics(m);
                try (Graph g = Graphs.capture(m, (Tensor) c[1]).verify();
                     Graph nhwc = new LayoutPropagation().apply(g).verify()) {
                    String text = nhwc.toString();
                    int convs = count(g, "conv");
                    assertEquals(c[3], convs, g.toString());
                    long nhwcConvs = nhwc.nodes().stream().filter(n -> n.label().equals("conv")
                            && n.attributes().contains("NHWC")).count();
                    assertEquals(convs, nhwcConvs, text);
                    assertEquals(1, countViews(nhwc, "nhwc"), "one transpose into the chain:\n" + text);
                    assertEquals(1, countViews(nhwc, "nchw"), "one transpose out of the chain:\n" + text);
                    assertTrue(!text.contains("NCHW"), text);
                    sameResults(g, nhwc, REORDERED, m.getClass().getSimpleName() + " in NHWC", (Tensor) c[2]);
                    sameResults(g, nhwc, REORDERED, m.getClass().getSimpleName() + " in NHWC, example", (Tensor) c[1]);
                }
                // and through the default pipeline, against eager
                try (CompiledFunction f = Graphs.compile(m, (Tensor) c[1], CompileOptions.builder().verify(true).build());
                     Tensor want = m.forward((Tensor) c[2]); Tensor got = f.apply((Tensor) c[2])) {
                    assertTrue(f.graph().toString().contains("NHWC"), f.graph().toString());
                    Reference.assertCloseChecked(want.toDoubleArray(), got.toDoubleArray(), REORDERED, "compiled NHWC");
                }
            }
        }
    }

    @Test
    void layoutPropagationLeavesLoneConvolutionsAndOtherLayoutsAlone() {
        ParamOptions p = ParamOptions.seeded(8);
        Convolution.ConvOptions same = Convolution.ConvOptions.builder().padding(1).build();
        Convolution.ConvOptions nhwcOpts = Convolution.ConvOptions.builder().padding(1)
                .layout(dev.cortado.ops.DataLayout.NHWC).build();
        try (Scope s = Scope.open();
             Sequential one = new Sequential(new Conv2d(2, 3, new long[] {3, 3}, same, true, p), Activation.relu(),
                     new Flatten(), new Linear(3 * 5 * 5, 2, true, p));
             Sequential already = new Sequential(new Conv2d(2, 3, new long[] {3, 3}, nhwcOpts, true, p), Activation.relu(),
                     new Conv2d(3, 3, new long[] {3, 3}, nhwcOpts, true, p));
             Conv2d c1 = new Conv2d(2, 3, new long[] {3, 3}, same, true, p);
             Linear lin = new Linear(3 * 5 * 5, 50, true, p);
             Conv2d c2 = new Conv2d(2, 3, new long[] {3, 3}, same, true, p);
             Tensor x = randn(2, 2, 5, 5); Tensor xh = randn(2, 5, 5, 2)) {
            Function<Tensor, Tensor> split = t -> c2.forward(lin.forward(c1.forward(t).reshape(2, 75)).reshape(2, 2, 5, 5));
            Function<Tensor, Tensor> lone = one::forward;
            Function<Tensor, Tensor> nhwcAlready = already::forward;
            one.eval();
            already.eval();
            for (Object[] c : new Object[][] {{lone, x, "one convolution"}, {nhwcAlready, xh, "NHWC already"},
                {split, x, "convolutions split by a linear layer"}}) {
                @SuppressWarnings("unchecked")
                Function<Tensor, Tensor> fn = (Function<Tensor, Tensor>) c[0];
                try (Graph g = Graphs.capture(fn, (Tensor) c[1], CompileOptions.defaults()).verify();
                     Graph out = new LayoutPropagation().apply(g).verify()) {
                    assertEquals(0, countViews(out, "nhwc") + countViews(out, "nchw"), c[2] + ":\n" + out);
                    assertEquals(g.nodes().size(), out.nodes().size(), c[2] + ":\n" + out);
                }
            }
        }
    }
}
