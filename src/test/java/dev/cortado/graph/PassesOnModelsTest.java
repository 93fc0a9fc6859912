package dev.cortado.graph;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.models.ResNet;
import dev.cortado.models.VisionTransformer;
import dev.cortado.nn.Activation;
import dev.cortado.nn.BatchNorm2d;
import dev.cortado.nn.CausalLanguageModel;
import dev.cortado.nn.Conv2d;
import dev.cortado.nn.Flatten;
import dev.cortado.nn.Linear;
import dev.cortado.nn.Losses;
import dev.cortado.nn.MLP;
import dev.cortado.nn.Module;
import dev.cortado.nn.ParamOptions;
import dev.cortado.nn.Pool;
import dev.cortado.nn.Sequential;
import dev.cortado.ops.Convolution;
import dev.cortado.ops.Generator;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import dev.cortado.testing.Reference;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.BiFunction;
import java.util.function.Function;
import java.util.function.Supplier;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Every pass, alone, and the full pipeline, on every model the project has (the MLP, the MNIST
 * CNN, the character model, ViT-style models, a small ResNet): on the inference graph of the
 * model's forward (eval mode) and on its training-step graph (loss, the backward and batch norm's
 * buffer updates, train mode: batch norm on batch statistics). Each optimized graph is verified and must give the captured
 * graph's results, every output (the loss and each gradient), on the example and on fresh random
 * inputs. Tolerance 1e-4 relative + 1e-5 absolute for float32: the exact passes agree bit for bit,
 * folding, fused epilogues, NHWC convolutions and the fused attention sum in another order.
 */
class PassesOnModelsTest {
    private static final Generator GEN = Generator.seeded(41);
    private static final Reference.Tol TOL = new Reference.Tol(1e-4, 1e-5);

    private static Tensor randn(long... dims) {
        return GEN.normal(0, 1, DType.FLOAT32, Device.CPU, dims);
    }

    private static Tensor tokens(long[] dims, int vocab, long seed) {
        long[] ids = new long[(int) (dims[0] * dims[1])];
        java.util.Random r = new java.util.Random(seed);
        for (int i = 0; i < ids.length; i++) {
            ids[i] = r.nextInt(vocab);
        }
        return Tensor.of(ids, dims);
    }

    private static Tensor labels(long n, int classes, long seed) {
        return tokens(new long[] {n, 1}, classes, seed).reshape(n);
    }

    /** Non-trivial running statistics, so that eval-mode batch norm is not the identity. */
    static void randomizeRunningStatistics(Module m) {
        for (Map.Entry<String, Tensor> e : m.namedBuffers().entrySet()) {
            if (e.getValue() == null) {
                continue;
            }
            if (e.getKey().endsWith("running_mean")) {
                try (Tensor r = GEN.normal(0, 0.5, DType.FLOAT32, Device.CPU, e.getValue().dims())) {
                    e.getValue().copyFrom(r);
                }
            } else if (e.getKey().endsWith("running_var")) {
                try (Tensor r = GEN.uniform(0.5, 2, DType.FLOAT32, Device.CPU, e.getValue().dims())) {
                    e.getValue().copyFrom(r);
                }
            }
        }
    }

    /**
     * A model, its loss and how to make its inputs and targets.
     *
     * @param name    for messages
     * @param make    builds the model
     * @param input   a fresh input for a seed
     * @param target  the targets for a seed
     * @param loss    loss(output, target)
     */
    record Case(String name, Supplier<Module> make, Function<Long, Tensor> input, Function<Long, Tensor> target,
                BiFunction<Tensor, Tensor, Tensor> loss) {
        @Override
        public String toString() {
            return name;
        }
    }

    static Stream<Arguments> models() {
        ParamOptions p = ParamOptions.seeded(17);
        Convolution.ConvOptions same = Convolution.ConvOptions.builder().padding(1).build();
        int vocab = 11;
        BiFunction<Tensor, Tensor, Tensor> lmLoss = (logits, t) -> {
            try (Tensor flat = logits.reshape(-1, vocab); Tensor ft = t.reshape(-1)) {
                return Losses.crossEntropy(flat, ft);
            }
        };
        return Stream.of(
                new Case("MLP", () -> new Sequential(new MLP(12, 24, MLP.Kind.GELU, true, p), new Linear(12, 4, true, p)),
                        s -> randn(5, 12), s -> labels(5, 4, s), Losses::crossEntropy),
                new Case("MNIST CNN", () -> new Sequential(
                        new Conv2d(1, 4, new long[] {3, 3}, same, false, p), new BatchNorm2d(4), Activation.relu(),
                        new Pool.MaxPool2d(2),
                        new Conv2d(4, 8, new long[] {3, 3}, same, false, p), new BatchNorm2d(8), Activation.relu(),
                        new Pool.MaxPool2d(2),
                        new Flatten(), new Linear(8 * 7 * 7, 16, true, p), Activation.relu(), new Linear(16, 10, true, p)),
                        s -> randn(3, 1, 28, 28), s -> labels(3, 10, s), Losses::crossEntropy),
                new Case("character model", () -> new CausalLanguageModel(
                        new CausalLanguageModel.Config(vocab, 16, 2, 4, 2, 32, 8, 0.0), ParamOptions.seeded(13)),
                        s -> tokens(new long[] {2, 8}, vocab, s), s -> tokens(new long[] {2, 8}, vocab, s + 100), lmLoss),
                new Case("ViT (class token)", () -> VisionTransformer.builder(8, 4).inChannels(1).dim(16).depth(1).heads(2)
                        .classes(3).dropout(0.0).params(ParamOptions.seeded(19)).build(),
                        s -> randn(2, 1, 8, 8), s -> labels(2, 3, s), Losses::crossEntropy),
                new Case("ViT block", () -> dev.cortado.nn.TransformerBlock.builder(16, 4).params(ParamOptions.seeded(29))
                        .build(), s -> randn(2, 5, 16), s -> randn(2, 5, 16), Losses::mse),
                // 16x16 images: the last stage's batch norm then sees 8 values per channel (2 would make its
                // backward so ill-conditioned that summation order alone moves the gradients by 1e-3)
                new Case("ResNet", () -> ResNet.builder(ResNet.Depth.R18).smallImages(true).width(4).inChannels(1)
                        .classes(3).params(ParamOptions.seeded(23)).build(),
                        s -> randn(2, 1, 16, 16), s -> labels(2, 3, s), Losses::crossEntropy))
                .map(Arguments::of);
    }

    /** Every pass alone (the freezing ones too: parameters do not change while a graph is compared). */
    private static List<Pass> everyPass(long budget) {
        return List.of(new DeadCodeElimination(), new CommonSubexpressionElimination(), new ConstantFolding(false),
                new ConstantFolding(true), new AlgebraicSimplification(), new ConvBatchNormFolding(true),
                new BatchNormReluFusion(), new AttentionFusion(), new LayoutPropagation(1), new EpilogueFusion(),
                new WeightPrepacking(true), new ElementwiseFusion(), new MemoryAwareSchedule(), new ActivationCheckpointing(budget),
                ActivationCheckpointing.free());
    }

    /**
     * Runs both graphs from the same parameters and compares their outputs and, for a training step's
     * graph with update nodes, the parameters and optimizer state each run leaves behind; the
     * parameters are as before afterwards.
     */
    private static void compare(Graph want, Graph got, Tensor[] inputs, String what) {
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
                                TOL, what + ", parameter " + want.parameters().get(i) + " after the run");
                    }
                }
            }
            try {
                assertEquals(x.length, y.length, what);
                for (int i = 0; i < x.length; i++) {
                    assertEquals(x[i].shape(), y[i].shape(), what + ", output " + i);
                    // the loss is checked to be a value the tolerance can tell from zero; some gradients are
                    // zero by symmetry (a key bias under softmax), so those are compared unchecked
                    if (i == 0) {
                        Reference.assertCloseChecked(x[i].toDoubleArray(), y[i].toDoubleArray(), TOL, what + ", output 0");
                    } else {
                        Reference.assertClose(x[i].toDoubleArray(), y[i].toDoubleArray(), TOL, what + ", output " + i);
                    }
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

    /** Each pass alone and the default pipeline (and one with a memory budget) against {@code g}. */
    private static void everyPassKeepsResults(Graph g, Tensor[][] inputs, String what) {
        long budget = MemoryPlan.plan(g).plannedPeakBytes() / 2;
        List<String> ran = new ArrayList<>();
        for (Pass pass : everyPass(budget)) {
            try (Graph opt = pass.apply(g).verify()) {
                for (int k = 0; k < inputs.length; k++) {
                    compare(g, opt, inputs[k], what + ", pass " + pass.name() + ", inputs " + k);
                }
                ran.add(pass.name());
            }
        }
        for (CompileOptions o : new CompileOptions[] {CompileOptions.builder().verify(true).build(),
            CompileOptions.builder().verify(true).memoryBudget(budget).build()}) {
            try (Graph opt = Graphs.optimize(g, o)) {
                for (int k = 0; k < inputs.length; k++) {
                    compare(g, opt, inputs[k], what + ", full pipeline" + (o.memoryBudget() == budget ? " with a budget" : "")
                            + ", inputs " + k);
                }
            }
        }
        assertEquals(everyPass(budget).size(), ran.size(), ran.toString());
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("models")
    void everyPassOnTheInferenceGraph(Case c) {
        try (Scope s = Scope.open(); Module m = c.make().get(); Tensor x = c.input().apply(1L); Tensor x2 = c.input().apply(2L)) {
            m.eval();
            randomizeRunningStatistics(m);
            try (Graph g = Graphs.capture(m, x).verify()) {
                everyPassKeepsResults(g, new Tensor[][] {{x}, {x2}}, c.name() + " inference");
            }
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("models")
    void everyPassOnTheTrainingGraph(Case c) {
        try (Scope s = Scope.open(); Module m = c.make().get(); Tensor x = c.input().apply(1L); Tensor y = c.target().apply(1L);
             Tensor x2 = c.input().apply(2L); Tensor y2 = c.target().apply(2L)) {
            m.train();
            CompileOptions none = CompileOptions.builder().level(CompileOptions.Level.NONE).build();
            // the training step's whole graph: loss, gradients, batch norm's buffer updates and the optimizer's update
            // nodes (SGD with momentum: parameters and momentum buffers written in place), compared after each run too
            try (dev.cortado.optim.Optimizer opt = dev.cortado.optim.Sgd.builder().lr(0.1).momentum(0.9).build(m.parameters());
                 TrainingStep f = Graphs.compileTrainingStep(m, c.loss(), opt, x, y, none)) {
                Graph g = f.capturedGraph().verify();
                assertTrue(g.toString().contains("_backward"), g.toString());
                assertTrue(g.toString().contains("update.optimizer("), g.toString());
                everyPassKeepsResults(g, new Tensor[][] {{x, y}, {x2, y2}}, c.name() + " gradients");
            }
        }
    }
}
