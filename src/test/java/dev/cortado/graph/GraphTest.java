package dev.cortado.graph;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.nn.Activation;
import dev.cortado.nn.BatchNorm2d;
import dev.cortado.nn.Conv2d;
import dev.cortado.nn.Dropout;
import dev.cortado.nn.Flatten;
import dev.cortado.nn.Linear;
import dev.cortado.nn.MLP;
import dev.cortado.nn.Module;
import dev.cortado.nn.ParamOptions;
import dev.cortado.nn.Pool;
import dev.cortado.nn.Sequential;
import dev.cortado.nn.TransformerBlock;
import dev.cortado.nn.functional.F;
import dev.cortado.ops.Convolution;
import dev.cortado.ops.Elementwise;
import dev.cortado.ops.Generator;
import dev.cortado.ops.LinearAlgebra;
import dev.cortado.ops.Reductions;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import dev.cortado.testing.Reference;
import java.util.List;
import java.util.Map;
import java.util.function.Function;
import org.junit.jupiter.api.Test;

/**
 * The graph layer end to end: the IR and its verifier, capture (and what it refuses), the
 * executor with its memory plan, each pass checked against the unoptimized graph on random inputs,
 * and compiled models (MLP, the MNIST CNN, a transformer block) against eager. Compiled results are
 * compared with float32's tolerance (the same kernels run, so they agree far closer than that).
 */
class GraphTest {
    private static final Generator GEN = Generator.seeded(7);
    private static final CompileOptions VERIFIED = CompileOptions.builder().verify(true).build();

    private static Tensor randn(long... dims) {
        return GEN.normal(0, 1, DType.FLOAT32, Device.CPU, dims);
    }

    private static void assertSame(Tensor want, Tensor got, String what) {
        assertEquals(want.shape(), got.shape(), what + ": shape");
        Reference.assertCloseChecked(want.toDoubleArray(), got.toDoubleArray(), Reference.tol(DType.FLOAT32), what);
    }

    /** Runs {@code g} through the executor on {@code inputs}. */
    private static Tensor[] run(Graph g, Tensor... inputs) {
        try (Executable e = new Executable(g)) {
            return e.run(inputs);
        }
    }

    // ------------------------------------------------------------------ IR

    @Test
    void builtGraphPrintsRendersAndVerifies() {
        try (Scope s = Scope.open(); Tensor w = randn(3, 4); Graph.Builder b = Graph.builder()) {
            Value x = b.input(TensorType.of(DType.FLOAT32, Device.CPU, dev.cortado.tensor.Shape.of(5, 3))
                    .withDim(0, Dim.symbolic("B", 5)));
            Value pw = b.parameter(w, "w");
            Value y = b.op1(LinearAlgebra.MATMUL_OP, null, x, pw);
            Value z = b.op1(Elementwise.RELU_OP, new Elementwise.Params(0, 0), y);
            Graph g = b.output(z).build();
            try (g) {
                g.verify();
                String text = g.toString();
                assertTrue(text.startsWith("graph(%0: float32[B, 3] cpu) {"), text);
                assertTrue(text.contains("%w: float32[3, 4] cpu = parameter"), text);
                assertTrue(text.contains("= matmul(%0, %w)"), text);
                assertTrue(text.contains("return (%"), text);
                String dot = g.toDot();
                assertTrue(dot.startsWith("digraph graph {") && dot.contains("matmul") && dot.contains("-> out0"), dot);
                Tensor[] out;
                try (Tensor xin = randn(5, 3); Tensor mm = LinearAlgebra.matmul(xin, w); Tensor want = Elementwise.relu(mm)) {
                    out = run(g, xin);
                    assertSame(want, out[0], "hand-built graph");
                }
            }
        }
    }

    @Test
    void verifierRejectsBrokenGraphs() {
        try (Scope s = Scope.open(); Tensor w = randn(3, 4)) {
            // an output type that is not what the shape rule gives
            try (Graph.Builder b = Graph.builder()) {
                Value x = b.input(TensorType.of(DType.FLOAT32, Device.CPU, dev.cortado.tensor.Shape.of(5, 3)));
                Value pw = b.parameter(w, "w");
                List<Value> y = b.op(LinearAlgebra.MATMUL_OP, null, List.of(x, pw),
                        List.of(TensorType.of(DType.FLOAT32, Device.CPU, dev.cortado.tensor.Shape.of(5, 5))));
                try (Graph g = b.output(y.get(0)).build()) {
                    GraphException e = assertThrows(GraphException.class, g::verify);
                    assertTrue(e.getMessage().contains("matmul") && e.getMessage().contains("shape rule gives"), e.getMessage());
                }
            }
            // a value read before it is defined (what a cycle would need)
            try (Graph.Builder other = Graph.builder(); Graph.Builder b = Graph.builder()) {
                Value foreign = other.input(TensorType.of(w));
                Value x = b.input(TensorType.of(w));
                Value y = b.op1(Elementwise.ADD_OP, null, x, x);
                b.add(new Node.OpCall(Elementwise.ADD_OP, null, List.of(y, foreign), List.of(b.fresh(TensorType.of(w)))));
                try (Graph g = b.output(y).build()) {
                    GraphException e = assertThrows(GraphException.class, g::verify);
                    assertTrue(e.getMessage().contains("before it is defined"), e.getMessage());
                }
            }
            // a value defined twice (single assignment)
            try (Graph.Builder b = Graph.builder()) {
                Value x = b.input(TensorType.of(w));
                Value y = b.op1(Elementwise.ADD_OP, null, x, x);
                b.add(new Node.OpCall(Elementwise.ADD_OP, null, List.of(x, x), List.of(y)));
                try (Graph g = b.output(y).build()) {
                    GraphException e = assertThrows(GraphException.class, g::verify);
                    assertTrue(e.getMessage().contains("second time"), e.getMessage());
                }
            }
            // a view reaching past its source
            try (Graph.Builder b = Graph.builder()) {
                Value x = b.input(TensorType.of(w));
                Value v = b.view("bad", x, TensorType.of(DType.FLOAT32, Device.CPU, dev.cortado.tensor.Shape.of(4, 4)),
                        new long[] {4, 1}, 0);
                try (Graph g = b.output(v).build()) {
                    GraphException e = assertThrows(GraphException.class, g::verify);
                    assertTrue(e.getMessage().contains("view.bad"), e.getMessage());
                }
            }
        }
    }

    // ------------------------------------------------------------------ capture

    @Test
    void captureRecordsOpsViewsParametersAndConstants() {
        try (Scope s = Scope.open()) {
            Tensor w = randn(4, 3);
            Tensor b = randn(4);
            Function<Tensor, Tensor> fn = x -> {
                try (Tensor h = F.linear(x, w, b); Tensor r = Elementwise.relu(h); Tensor t = Elementwise.mul(r, 2.0)) {
                    return t.reshape(-1);
                }
            };
            CompileOptions o = CompileOptions.builder().parameters(Map.of("w", w, "b", b)).build();
            try (Tensor x = randn(2, 3); Graph g = Graphs.capture(fn, x, o).verify()) {
                String text = g.toString();
                assertTrue(text.contains("%w: float32[4, 3] cpu = parameter"), text);
                assertTrue(text.contains("view.permute(%w"), text);
                assertTrue(text.contains("= matmul("), text);
                assertTrue(text.contains("= constant"), text); // the 2.0 of mul(r, 2.0)
                assertTrue(text.contains("view.reshape("), text);
                try (Tensor want = fn.apply(x)) {
                    Tensor[] got = run(g, x);
                    assertSame(want, got[0], "captured function");
                }
            }
        }
    }

    @Test
    void captureRefusesWhatAGraphCannotHold() {
        try (Scope s = Scope.open(); Tensor x = randn(2, 3); Tensor outside = randn(3)) {
            CaptureException e = assertThrows(CaptureException.class,
                    () -> Graphs.capture(t -> Elementwise.add(t, outside), x, CompileOptions.defaults()));
            assertTrue(e.getMessage().contains("input 'b' of op 'add'") && e.getMessage().contains("float32[3] on cpu")
                    && e.getMessage().contains("not a parameter"), e.getMessage());

            try (Dropout d = new Dropout(0.5, Generator.seeded(1))) {
                d.train();
                e = assertThrows(CaptureException.class, () -> Graphs.capture(d, x));
                assertTrue(e.getMessage().contains("random numbers"), e.getMessage());
            }
            try (BatchNorm2d bn = new BatchNorm2d(3); Tensor img = randn(2, 3, 4, 4)) {
                bn.train();
                e = assertThrows(CaptureException.class, () -> Graphs.capture(bn, img));
                assertTrue(e.getMessage().contains("in place") && e.getMessage().contains("eval mode"), e.getMessage());
            }
            e = assertThrows(CaptureException.class, () -> Graphs.capture(t -> {
                t.fillWith(1);
                return Elementwise.neg(t);
            }, x, CompileOptions.defaults()));
            assertTrue(e.getMessage().contains("fill writes in place"), e.getMessage());

            e = assertThrows(CaptureException.class, () -> Graphs.capture(t -> {
                try (Tensor sum = Reductions.sum(t)) {
                    return sum.item() > 0 ? Elementwise.neg(t) : Elementwise.exp(t); // branches on a value
                }
            }, x, CompileOptions.defaults()));
            assertTrue(e.getMessage().contains("reads the elements of float32[] on cpu") && e.getMessage().contains("control flow"),
                    e.getMessage());
            // host reads of tensors the function made itself (not computed from the inputs) are fine
            try (Graph g = Graphs.capture(t -> {
                try (Tensor c = Tensor.scalar(3, DType.FLOAT32, Device.CPU)) {
                    return Elementwise.mul(t, c.item());
                }
            }, x, CompileOptions.defaults()).verify(); Tensor want = Elementwise.mul(x, 3.0)) {
                assertSame(want, run(g, x)[0], "host read of a made tensor");
            }
        }
    }

    // ------------------------------------------------------------------ passes

    /** A function with duplicates, dead code, identities and constant arithmetic for every pass to find. */
    private static Tensor messy(Tensor x, Tensor w) {
        try (Tensor a = LinearAlgebra.matmul(x, w); Tensor a2 = LinearAlgebra.matmul(x, w); // cse
             Tensor dead = Elementwise.exp(a); // dce
             Tensor one = Tensor.ones(DType.FLOAT32, Device.CPU, 1); Tensor two = Elementwise.add(one, one); // folding
             Tensor s = Elementwise.mul(a, two); Tensor s1 = Elementwise.mul(s, one); // x * 1
             Tensor z = Tensor.zeros(DType.FLOAT32, Device.CPU, 1); Tensor s2 = Elementwise.add(s1, z); // x + 0
             Tensor v1 = s2.reshape(-1); Tensor v2 = v1.reshape(s2.dims()); // view of view, identity
             Tensor t = Elementwise.tanh(a2); Tensor sum = Elementwise.add(v2, t);
             Tensor c1 = Elementwise.affine(sum, 2, 1); Tensor c2 = Elementwise.affine(sum, 3, -1); // same op and input, other attributes: not merged
             Tensor both = Elementwise.mul(c1, c2)) {
            return Reductions.sum(both, false, 1);
        }
    }

    @Test
    void eachPassKeepsResultsAndDoesItsJob() {
        try (Scope s = Scope.open(); Tensor w = randn(6, 5)) {
            CompileOptions o = CompileOptions.builder().parameters(Map.of("w", w)).build();
            try (Tensor example = randn(4, 6); Graph g = Graphs.capture(x -> messy(x, w), example, o).verify()) {
                int before = g.nodes().size();
                List<Pass> passes = List.of(new DeadCodeElimination(), new CommonSubexpressionElimination(),
                        new ConstantFolding(false), new ConstantFolding(true), new AlgebraicSimplification());
                for (Pass p : passes) {
                    try (Graph opt = p.apply(g).verify()) {
                        assertNotSame(g, opt);
                        assertTrue(opt.nodes().size() < before, p.name() + " removed nothing:\n" + opt);
                        for (int trial = 0; trial < 3; trial++) {
                            try (Tensor x = randn(4, 6)) {
                                Tensor[] want = run(g, x);
                                Tensor[] got = run(opt, x);
                                assertSame(want[0], got[0], p.name() + " trial " + trial);
                            }
                        }
                    }
                }
                try (Graph fused = Graphs.optimize(g, CompileOptions.builder().verify(true).build())) {
                    String text = fused.toString(); // the elementwise tail is one fused node
                    assertEquals(1, count(text, "= fused_elementwise("), text);
                    assertTrue(!text.contains("= mul(") && !text.contains("= affine(") && !text.contains("= tanh("), text);
                    try (Tensor x = randn(4, 6); Tensor want = messy(x, w)) {
                        assertSame(want, run(fused, x)[0], "all passes with elementwise fusion");
                    }
                }
                try (Graph all = Graphs.optimize(g, CompileOptions.builder().fuseElementwise(false).verify(true).build())) {
                    String text = all.toString();
                    assertEquals(1, count(text, "= matmul("), text);
                    assertTrue(!text.contains("= exp("), text);
                    assertEquals(2, count(text, "= mul("), text); // a * 2 and c1 * c2; the * 1 is gone
                    assertEquals(2, count(text, "= affine("), text);
                    assertEquals(1, count(text, "= add("), text); // the + 0 and the constant 1 + 1 are gone

                    assertTrue(!text.contains("view."), text);
                    try (Tensor x = randn(4, 6); Tensor want = messy(x, w)) {
                        assertSame(want, run(all, x)[0], "all passes");
                    }
                }
            }
        }
    }

    private static void randomizeRunningStatistics(Module m) {
        for (Map.Entry<String, Tensor> e : m.namedBuffers().entrySet()) {
            if (e.getKey().endsWith("running_mean")) {
                try (Tensor r = randn(e.getValue().dims())) {
                    e.getValue().copyFrom(r);
                }
            } else if (e.getKey().endsWith("running_var")) {
                try (Tensor r = GEN.uniform(0.5, 2, DType.FLOAT32, Device.CPU, e.getValue().dims())) {
                    e.getValue().copyFrom(r);
                }
            }
        }
        for (Map.Entry<String, Tensor> e : m.namedParameters().entrySet()) {
            if (e.getKey().endsWith("1.weight") || e.getKey().endsWith("1.bias")) { // batch norm's affine
                try (Tensor r = randn(e.getValue().dims())) {
                    e.getValue().copyFrom(r);
                }
            }
        }
    }

    @Test
    void convBatchNormFoldingMatchesUnfolded() {
        Convolution.ConvOptions same = Convolution.ConvOptions.builder().padding(1).build();
        ParamOptions p = ParamOptions.seeded(11);
        for (boolean convBias : new boolean[] {false, true}) {
            try (Scope s = Scope.open();
                 Sequential m = new Sequential(new Conv2d(3, 5, new long[] {3, 3}, same, convBias, p), new BatchNorm2d(5),
                         Activation.relu());
                 Tensor example = randn(2, 3, 6, 7)) {
                randomizeRunningStatistics(m);
                m.eval();
                try (Graph g = Graphs.capture(m, example).verify();
                     Graph unfrozen = new ConvBatchNormFolding(false).apply(g).verify();
                     Graph folded = new ConvBatchNormFolding(true).apply(g).verify()) {
                    assertTrue(g.toString().contains("batch_norm_inference"), g.toString());
                    assertTrue(unfrozen.toString().contains("batch_norm_inference"), "parameters are not constants unless frozen");
                    assertTrue(!folded.toString().contains("batch_norm_inference"), folded.toString());
                    assertEquals(1, count(folded.toString(), "= conv("), folded.toString());
                    for (int trial = 0; trial < 3; trial++) {
                        try (Tensor x = randn(2, 3, 6, 7)) {
                            Tensor want = run(g, x)[0];
                            Tensor got = run(folded, x)[0];
                            // folding rounds the scaled weight once: float32 rounding of the products, not of the kernels
                            Reference.assertCloseChecked(want.toDoubleArray(), got.toDoubleArray(), new Reference.Tol(1e-4, 1e-5),
                                    "conv+bn folded, bias " + convBias + ", trial " + trial);
                        }
                    }
                }
            }
        }
    }

    @Test
    void epilogueFusionMatchesUnfused() {
        Convolution.ConvOptions same = Convolution.ConvOptions.builder().padding(1).build();
        ParamOptions p = ParamOptions.seeded(12);
        try (Scope s = Scope.open();
             Sequential m = new Sequential(new Conv2d(2, 4, new long[] {3, 3}, same, true, p), Activation.relu(),
                     new Flatten(), new Linear(4 * 5 * 5, 6, true, p), Activation.gelu(), new Linear(6, 3, true, p));
             Tensor example = randn(3, 2, 5, 5);
             Graph g = Graphs.capture(m, example).verify();
             Graph simplified = new AlgebraicSimplification().apply(g);
             Graph fused = new EpilogueFusion().apply(simplified).verify()) {
            String text = fused.toString();
            assertEquals(0, count(text, "= relu("), text);
            assertEquals(0, count(text, "= matmul("), text);
            assertEquals(2, count(text, "= gemm("), text);
            assertTrue(text.contains(", RELU"), text); // the conv's fused activation
            for (int trial = 0; trial < 3; trial++) {
                try (Tensor x = randn(3, 2, 5, 5)) {
                    Tensor want = run(g, x)[0];
                    Tensor got = run(fused, x)[0];
                    // the bias is added inside the GEMM: one rounding differs
                    Reference.assertCloseChecked(want.toDoubleArray(), got.toDoubleArray(), new Reference.Tol(1e-4, 1e-5),
                            "epilogues fused, trial " + trial);
                }
            }
        }
    }

    private static int count(String text, String what) {
        return text.split(java.util.regex.Pattern.quote(what), -1).length - 1;
    }

    // ------------------------------------------------------------------ memory plan

    @Test
    void memoryPlanReusesMemoryWithoutOverlap() {
        try (Scope s = Scope.open(); Tensor w = randn(64, 64); Tensor x = randn(32, 64)) {
            Function<Tensor, Tensor> chain = t -> {
                Tensor h = t;
                for (int i = 0; i < 8; i++) {
                    Tensor m = LinearAlgebra.matmul(h, w);
                    Tensor next = Elementwise.tanh(m);
                    m.close();
                    if (h != t) {
                        h.close();
                    }
                    h = next;
                }
                return h;
            };
            CompileOptions o = CompileOptions.builder().parameters(Map.of("w", w)).build();
            try (CompiledFunction f = Graphs.compile(chain, x, o); Tensor want = chain.apply(x); Tensor got = f.apply(x)) {
                assertSame(want, got, "matmul-tanh chain");
                MemoryPlan plan = f.memoryPlan();
                long sum = 0;
                for (MemoryPlan.Buffer a : plan.buffers()) {
                    sum += a.bytes();
                    assertEquals(0, a.offset() % MemoryPlan.ALIGNMENT);
                    for (MemoryPlan.Buffer b : plan.buffers()) {
                        boolean inPlace = a.offset() == b.offset() && (a.last() == b.first() || b.last() == a.first());
                        if (a != b && a.overlapsInTime(b) && !inPlace) {
                            assertTrue(a.offset() + a.bytes() <= b.offset() || b.offset() + b.bytes() <= a.offset(),
                                    "buffers live at once overlap: " + a + " " + b);
                        }
                    }
                }
                assertEquals(15, plan.buffers().size(), plan.toString());
                assertEquals(7, plan.inPlaceCount(), plan.toString()); // each tanh over its product (the last is returned)
                assertEquals(2 * 32 * 64 * 4, plan.arenaBytes(), plan.toString()); // two live at a time
                assertTrue(plan.arenaBytes() < sum, plan.toString());
                assertTrue(plan.arenaBytes() <= plan.eagerPeakBytes(), plan.toString()); // best fit reaches the ideal live set here
                // a second call reuses the arena and gives the same result
                try (Tensor again = f.apply(x)) {
                    assertSame(want, again, "second call");
                }
            }
        }
    }

    @Test
    void scheduleLowersThePlannedPeak() {
        try (Scope s = Scope.open(); Tensor w = randn(16, 256); Tensor x = randn(64, 16)) {
            // four large products first, then their reductions: the captured order holds all four at once
            Function<Tensor, Tensor> branches = t -> {
                Tensor[] h = new Tensor[4];
                Tensor[] r = new Tensor[4];
                try {
                    for (int i = 0; i < 4; i++) {
                        try (Tensor scaled = Elementwise.mul(t, i + 1.0)) {
                            h[i] = LinearAlgebra.matmul(scaled, w);
                        }
                    }
                    for (int i = 0; i < 4; i++) {
                        r[i] = Reductions.sum(h[i], false, 1);
                    }
                    try (Tensor a = Elementwise.add(r[0], r[1]); Tensor b = Elementwise.add(r[2], r[3])) {
                        return Elementwise.add(a, b);
                    }
                } finally {
                    for (Tensor z : h) {
                        if (z != null) {
                            z.close();
                        }
                    }
                    for (Tensor z : r) {
                        if (z != null) {
                            z.close();
                        }
                    }
                }
            };
            CompileOptions o = CompileOptions.builder().parameters(Map.of("w", w)).build();
            try (Graph g = Graphs.capture(branches, x, o).verify(); Graph scheduled = new MemoryAwareSchedule().apply(g).verify()) {
                MemoryPlan before = MemoryPlan.plan(g);
                MemoryPlan after = MemoryPlan.plan(scheduled);
                long product = 64 * 256 * 4;
                assertTrue(before.arenaBytes() >= 4 * product, before.toString());
                assertTrue(after.arenaBytes() < 2 * product, after.toString());
                assertEquals(g.nodes().size(), scheduled.nodes().size());
                for (int trial = 0; trial < 2; trial++) {
                    try (Tensor xi = randn(64, 16)) {
                        assertSame(run(g, xi)[0], run(scheduled, xi)[0], "scheduled, trial " + trial);
                    }
                }
            }
        }
    }

    // ------------------------------------------------------------------ guards

    @Test
    void guardsRecaptureOrThrow() {
        try (Scope s = Scope.open(); Linear lin = new Linear(3, 2, true, ParamOptions.seeded(3))) {
            try (Tensor x = randn(4, 3); CompiledFunction f = Graphs.compile(lin, x)) {
                try (Tensor x2 = randn(5, 3); Tensor want = lin.forward(x2); Tensor got = f.apply(x2)) {
                    assertSame(want, got, "re-captured for batch 5");
                }
                assertEquals(2, f.specializations());
                try (Tensor x3 = randn(4, 3); Tensor want = lin.forward(x3); Tensor got = f.apply(x3)) {
                    assertSame(want, got, "batch 4 again");
                }
                assertEquals(2, f.specializations());
                try (Tensor t = randn(3, 4); Tensor xt = t.transpose(0, 1); Tensor want = lin.forward(xt); Tensor got = f.apply(xt)) {
                    assertSame(want, got, "non-contiguous input");
                }
            }
            CompileOptions strict = CompileOptions.builder().onGuardFailure(CompileOptions.GuardPolicy.THROW).build();
            try (Tensor x = randn(4, 3); CompiledFunction f = Graphs.compile(lin, x, strict); Tensor x2 = randn(5, 3);
                 Tensor x64 = x.to(DType.FLOAT64)) {
                GuardFailedException e = assertThrows(GuardFailedException.class, () -> f.apply(x2));
                assertTrue(e.getMessage().contains("input 0 dimension 0 is 5"), e.getMessage());
                e = assertThrows(GuardFailedException.class, () -> f.apply(x64));
                assertTrue(e.getMessage().contains("dtype float64"), e.getMessage());
            }
            CompileOptions dynamic = CompileOptions.builder().onGuardFailure(CompileOptions.GuardPolicy.THROW)
                    .dynamicDim(0, 0, "B").build();
            try (Tensor x = randn(4, 3); CompiledFunction f = Graphs.compile(lin, x, dynamic); Tensor x2 = randn(5, 3);
                 Tensor want = lin.forward(x2); Tensor got = f.apply(x2)) {
                assertSame(want, got, "dynamic batch");
                assertTrue(f.capturedGraph().toString().startsWith("graph(%0: float32[B, 3] cpu)"), f.capturedGraph().toString());
            }
        }
    }

    @Test
    void dynamicDimensionIsPlannedFromTheSymbolicGraph() {
        try (Scope s = Scope.open(); Tensor w = randn(3, 2); Tensor b = randn(2)) {
            int[] calls = {0};
            Function<Tensor, Tensor> fn = x -> {
                calls[0]++;
                try (Tensor y = F.linear(x, w.transpose(0, 1), b); Tensor r = Elementwise.relu(y)) {
                    return r.reshape(-1); // [2*B]
                }
            };
            CompileOptions o = CompileOptions.builder().parameters(Map.of("w", w, "b", b)).dynamicDim(0, 0, "B")
                    .onGuardFailure(CompileOptions.GuardPolicy.THROW).verify(true).build();
            try (Tensor x = randn(4, 3); CompiledFunction f = Graphs.compile(fn, x, o)) {
                assertEquals(3, calls[0], "captured at B = 4, 5, 6");
                String text = f.symbolicGraph().toString();
                assertTrue(text.contains("float32[B, 2] cpu = matmul(") && text.contains("float32[2*B] cpu = view.reshape("), text);
                for (long batch : new long[] {1, 7, 4, 33}) {
                    try (Tensor xb = randn(batch, 3); Tensor want = fn.apply(xb); Tensor got = f.apply(xb)) {
                        assertSame(want, got, "batch " + batch);
                    }
                }
                assertEquals(3 + 4, calls[0], "the eager references only: no re-capture");
                assertEquals(4, f.specializations());
                try (Tensor bad = randn(4, 5)) {
                    GuardFailedException e = assertThrows(GuardFailedException.class, () -> f.apply(bad));
                    assertTrue(e.getMessage().contains("dimension 1 is 5"), e.getMessage());
                }
            }
            // not linear in B ([B*B]): no symbolic graph, each size is captured again
            Function<Tensor, Tensor> square = x -> {
                try (Tensor xt = x.transpose(0, 1); Tensor g = LinearAlgebra.matmul(x, xt)) {
                    return g.reshape(-1);
                }
            };
            CompileOptions d = CompileOptions.builder().dynamicDim(0, 0, "B").build();
            try (Tensor x = randn(4, 3); CompiledFunction f = Graphs.compile(square, x, d); Tensor x2 = randn(6, 3);
                 Tensor want = square.apply(x2); Tensor got = f.apply(x2)) {
                assertEquals(null, f.symbolicGraph());
                assertSame(want, got, "re-captured B*B");
            }
        }
    }

    // ------------------------------------------------------------------ gradients

    private static void checkGradients(Module m, Tensor x, Tensor y, String what) {
        CompileOptions o = CompileOptions.builder().verify(true).build();
        List<Tensor> params = m.parameters();
        try (CompiledFunction f = Graphs.compileGradients(m, dev.cortado.nn.Losses::crossEntropy, x, y, o)) {
            String text = f.capturedGraph().toString();
            assertTrue(text.contains("cross_entropy_backward"), text);
            for (int trial = 0; trial < 2; trial++) {
                Tensor[] got = f.applyAll(x, y);
                assertEquals(params.size() + 1, got.length);
                m.zeroGrad();
                try (Tensor logits = m.forward(x); Tensor loss = dev.cortado.nn.Losses.crossEntropy(logits, y)) {
                    loss.backward();
                    assertSame(loss, got[0], what + " loss, trial " + trial);
                }
                for (int i = 0; i < params.size(); i++) {
                    Reference.assertCloseChecked(params.get(i).grad().toDoubleArray(), got[i + 1].toDoubleArray(),
                            new Reference.Tol(1e-4, 1e-5), what + " gradient " + i + ", trial " + trial);
                }
                m.zeroGrad();
                // the parameters are read by reference: a step changes them, the next call sees it
                try (dev.cortado.autograd.Autograd.GradMode off = dev.cortado.autograd.Autograd.noGrad()) {
                    for (int i = 0; i < params.size(); i++) {
                        try (Tensor step = Elementwise.mul(got[i + 1], -0.5); Tensor next = Elementwise.add(params.get(i), step)) {
                            params.get(i).copyFrom(next);
                        }
                    }
                }
            }
        }
    }

    @Test
    void compiledGradientsMatchTheTape() {
        ParamOptions p = ParamOptions.seeded(21);
        Convolution.ConvOptions same = Convolution.ConvOptions.builder().padding(1).build();
        try (Scope s = Scope.open();
             Sequential mlp = new Sequential(new Linear(6, 8, true, p), Activation.gelu(), new Linear(8, 3, true, p));
             Sequential cnn = new Sequential(new Conv2d(1, 4, new long[] {3, 3}, same, true, p), Activation.relu(),
                     new Pool.MaxPool2d(2), new Flatten(), new Linear(4 * 3 * 3, 3, true, p));
             Tensor x = randn(5, 6); Tensor img = randn(5, 1, 6, 6); Tensor y = Tensor.of(new long[] {0, 2, 1, 1, 0}, 5)) {
            checkGradients(mlp, x, y, "MLP");
            checkGradients(cnn, img, y, "CNN");
            // a parameter that holds a gradient at capture time is refused
            try (Tensor logits = mlp.forward(x); Tensor loss = dev.cortado.nn.Losses.crossEntropy(logits, y)) {
                loss.backward();
            }
            IllegalStateException e = assertThrows(IllegalStateException.class,
                    () -> Graphs.compileGradients(mlp, dev.cortado.nn.Losses::crossEntropy, x, y, CompileOptions.defaults()));
            assertTrue(e.getMessage().contains("holds a gradient"), e.getMessage());
            mlp.zeroGrad();
        }
    }

    // ------------------------------------------------------------------ models

    private static void checkModel(Module m, Tensor x, String what) {
        checkModel(m, x, GraphTest::randn, what);
    }

    /** Every pass, alone, on the model's captured graph: verified, and the same results as the captured graph. */
    private static void checkEveryPass(Module m, Tensor x, Function<long[], Tensor> make, String what) {
        List<Pass> passes = List.of(new DeadCodeElimination(), new CommonSubexpressionElimination(), new ConstantFolding(false),
                new ConstantFolding(true), new AlgebraicSimplification(), new ConvBatchNormFolding(true), new EpilogueFusion(),
                new MemoryAwareSchedule());
        try (Graph g = Graphs.capture(m, x).verify(); Tensor fresh = make.apply(x.dims())) {
            for (Pass p : passes) {
                try (Graph opt = p.apply(g).verify()) {
                    for (Tensor in : new Tensor[] {x, fresh}) {
                        Tensor want = run(g, in)[0];
                        Tensor got = run(opt, in)[0];
                        // folding and fused epilogues round differently; the other passes are exact
                        Reference.assertCloseChecked(want.toDoubleArray(), got.toDoubleArray(), new Reference.Tol(1e-4, 1e-5),
                                what + ", pass " + p.name());
                    }
                }
            }
        }
    }

    private static void checkModel(Module m, Tensor x, Function<long[], Tensor> make, String what) {
        m.eval();
        checkEveryPass(m, x, make, what);
        try (CompiledFunction f = Graphs.compile(m, x, VERIFIED); Tensor want = m.forward(x); Tensor got = f.apply(x)) {
            assertSame(want, got, what);
            assertTrue(f.memoryPlan().arenaBytes() <= f.memoryPlan().eagerPeakBytes(), f.memoryPlan().toString());
        }
        // a dynamic batch: the symbolic graph serves another batch size without running forward again
        CompileOptions dynamic = CompileOptions.builder().dynamicDim(0, 0, "B").verify(true).build();
        long[] dims = x.dims();
        dims[0] += 3;
        try (CompiledFunction f = Graphs.compile(m, x, dynamic); Tensor x2 = make.apply(dims); Tensor want = m.forward(x2);
             Tensor got = f.apply(x2)) {
            assertTrue(f.symbolicGraph() != null, what + ": no symbolic graph");
            assertTrue(f.symbolicGraph().inputs().get(0).type().toString().startsWith(x.dtype() + "[B,"), f.symbolicGraph().toString());
            assertSame(want, got, what + ", batch " + dims[0] + " from the symbolic graph");
        }
    }

    @Test
    void compiledMlpMatchesEager() {
        try (Scope s = Scope.open(); MLP mlp = new MLP(16, 32, MLP.Kind.GELU, true, ParamOptions.seeded(1));
             MLP swiglu = new MLP(16, 24, MLP.Kind.SWIGLU, false, ParamOptions.seeded(2)); Tensor x = randn(7, 16)) {
            checkModel(mlp, x, "MLP (GELU)");
            checkModel(swiglu, x, "MLP (SwiGLU)");
        }
    }

    @Test
    void compiledMnistCnnMatchesEager() {
        ParamOptions p = ParamOptions.seeded(5);
        Convolution.ConvOptions same = Convolution.ConvOptions.builder().padding(1).build();
        try (Scope s = Scope.open();
             Sequential cnn = new Sequential(
                     new Conv2d(1, 8, new long[] {3, 3}, same, false, p), new BatchNorm2d(8), Activation.relu(),
                     new Pool.MaxPool2d(2),
                     new Conv2d(8, 16, new long[] {3, 3}, same, false, p), new BatchNorm2d(16), Activation.relu(),
                     new Pool.MaxPool2d(2),
                     new Flatten(), new Linear(16 * 7 * 7, 32, true, p), Activation.relu(), new Linear(32, 10, true, p));
             Tensor x = randn(3, 1, 28, 28)) {
            for (Map.Entry<String, Tensor> e : cnn.namedBuffers().entrySet()) { // non-trivial running statistics
                if (e.getKey().endsWith("running_mean")) {
                    try (Tensor r = randn(e.getValue().dims())) {
                        e.getValue().copyFrom(r);
                    }
                } else if (e.getKey().endsWith("running_var")) {
                    try (Tensor r = GEN.uniform(0.5, 2, DType.FLOAT32, Device.CPU, e.getValue().dims())) {
                        e.getValue().copyFrom(r);
                    }
                }
            }
            checkModel(cnn, x, "MNIST CNN");
            CompileOptions frozen = CompileOptions.builder().freezeParameters(true).verify(true).build();
            try (CompiledFunction f = Graphs.compile(cnn, x, frozen); Tensor want = cnn.forward(x); Tensor got = f.apply(x)) {
                String text = f.graph().toString();
                assertTrue(!text.contains("batch_norm_inference") && !text.contains("view.permute"), text); // weight transposes folded
                Reference.assertCloseChecked(want.toDoubleArray(), got.toDoubleArray(), new Reference.Tol(1e-4, 1e-5),
                        "MNIST CNN, frozen and folded");
            }
        }
    }

    @Test
    void compiledCharacterModelMatchesEager() {
        Function<long[], Tensor> tokens = dims -> {
            long[] ids = new long[(int) (dims[0] * dims[1])];
            java.util.Random r = new java.util.Random(dims[0]);
            for (int i = 0; i < ids.length; i++) {
                ids[i] = r.nextInt(11);
            }
            return Tensor.of(ids, dims);
        };
        try (Scope s = Scope.open();
             dev.cortado.nn.CausalLanguageModel lm = new dev.cortado.nn.CausalLanguageModel(
                     new dev.cortado.nn.CausalLanguageModel.Config(11, 16, 2, 4, 2, 32, 8, 0.0), ParamOptions.seeded(13));
             Tensor x = tokens.apply(new long[] {2, 8})) {
            checkModel(lm, x, tokens, "character model");
        }
    }

    @Test
    void compiledTransformerBlockMatchesEager() {
        try (Scope s = Scope.open(); TransformerBlock blk = TransformerBlock.builder(16, 4).params(ParamOptions.seeded(9)).build();
             TransformerBlock llama = TransformerBlock.builder(16, 4).llama(32).params(ParamOptions.seeded(10)).build();
             Tensor x = randn(2, 5, 16)) {
            checkModel(blk, x, "transformer block");
            checkModel(llama, x, "llama-style block (RMSNorm, RoPE, SwiGLU)");
        }
    }
}
