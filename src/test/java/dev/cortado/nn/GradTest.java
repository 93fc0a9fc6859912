package dev.cortado.nn;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.autograd.Autograd;
import dev.cortado.autograd.GradCheck;
import dev.cortado.nn.Losses.Reduction;
import dev.cortado.nn.functional.F;
import dev.cortado.ops.Convolution.ConvOptions;
import dev.cortado.ops.Elementwise;
import dev.cortado.ops.Generator;
import dev.cortado.ops.Normalization;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import dev.cortado.testing.Reference;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * Gradients of the layers and losses against central finite differences (GradCheck, float64,
 * tiny shapes; default tolerances 1e-6 absolute + 1e-5 relative), and a tiny MLP that overfits
 * one batch with plain SGD written inline.
 *
 * <p>GradCheck writes perturbed values into its inputs in place, so a module's own parameter
 * tensors are passed as inputs and the function simply calls the module.
 */
class GradTest {
    static final ParamOptions F64 = ParamOptions.seeded(17).withDType(DType.FLOAT64);

    static Tensor leaf(Random r, long... dims) {
        return Reference.make(Reference.uniform(r, (int) Reference.numel(dims), -1, 1), DType.FLOAT64, dims)
                .requiresGrad(true);
    }

    static Tensor[] withInput(Tensor x, Module m) {
        Tensor[] p = m.parameters().toArray(new Tensor[0]);
        Tensor[] all = new Tensor[p.length + 1];
        all[0] = x;
        System.arraycopy(p, 0, all, 1, p.length);
        return all;
    }

    @Test
    void linear() {
        Random r = new Random(1);
        try (Scope s = Scope.open(); Linear lin = new Linear(4, 3, true, F64)) {
            Tensor x = leaf(r, 2, 3, 4);
            GradCheck.check("Linear", in -> lin.forward(in[0]), withInput(x, lin));
            // 2-d and 1-d inputs: the weight gradient is produced in weightᵀ's layout (matmul's
            // backward for a transposed b), through every shape path of that rule
            GradCheck.check("Linear 2-d", in -> lin.forward(in[0]), withInput(leaf(r, 5, 4), lin));
            GradCheck.check("Linear 1-d", in -> lin.forward(in[0]), withInput(leaf(r, 4), lin));
        }
        try (Scope s = Scope.open()) {
            // plain matmul with a transposed b of odd shape; b itself is the leaf, a transposed view
            Tensor a = leaf(r, 3, 5);
            Tensor bt = leaf(r, 7, 5);
            GradCheck.check("matmul(a, btᵀ)", in -> dev.cortado.ops.LinearAlgebra.matmul(in[0], in[1].transpose(0, 1)),
                    new Tensor[] {a, bt});
        }
    }

    @Test
    void conv2d() {
        Random r = new Random(2);
        ConvOptions o = ConvOptions.builder().stride(2).padding(1).groups(2).build();
        try (Scope s = Scope.open(); Conv2d conv = new Conv2d(4, 2, new long[] {3}, o, true, F64)) {
            Tensor x = leaf(r, 1, 4, 5, 4);
            GradCheck.check("Conv2d", in -> conv.forward(in[0]), withInput(x, conv));
        }
        ConvOptions o1 = ConvOptions.builder().stride(2).padding(1).build();
        try (Scope s = Scope.open(); Conv1d c1 = new Conv1d(2, 3, 3, o1, true, F64);
             ConvTranspose2d ct = new ConvTranspose2d(2, 3, new long[] {3}, o1, true, F64)) {
            GradCheck.check("Conv1d", in -> c1.forward(in[0]), withInput(leaf(r, 2, 2, 7), c1));
            GradCheck.check("ConvTranspose2d", in -> ct.forward(in[0]), withInput(leaf(r, 1, 2, 3, 2), ct));
        }
    }

    @Test
    void norms() {
        Random r = new Random(3);
        try (Scope s = Scope.open(); LayerNorm ln = new LayerNorm(new long[] {5}, 1e-5, true, true, F64);
             RMSNorm rms = new RMSNorm(new long[] {5}, 1e-6, true, F64);
             GroupNorm gn = new GroupNorm(2, 4, 1e-5, true, F64)) {
            for (Module m : new Module[] {ln, rms, gn}) {
                for (Tensor p : m.parameters()) {
                    LayersTest.randomize(r, p);
                }
            }
            GradCheck.check("LayerNorm", in -> ln.forward(in[0]), withInput(leaf(r, 3, 5), ln));
            GradCheck.check("RMSNorm", in -> rms.forward(in[0]), withInput(leaf(r, 3, 5), rms));
            GradCheck.check("GroupNorm", in -> gn.forward(in[0]), withInput(leaf(r, 2, 4, 3), gn));
        }
    }

    @Test
    void multiheadAttention() {
        Random r = new Random(4);
        try (Scope s = Scope.open();
             MultiheadAttention m = MultiheadAttention.builder(4, 2).kvHeads(1).causal(true).rope().params(F64).build()) {
            Tensor x = leaf(r, 2, 3, 4);
            GradCheck.check("MultiheadAttention", in -> m.forward(in[0]), withInput(x, m));
        }
        // soft-capped scores (cap 0.5: most scores of these O(1) inputs are bent)
        try (Scope s = Scope.open(); MultiheadAttention m = MultiheadAttention.builder(4, 2).kvHeads(1).causal(true)
                .softcap(0.5).params(F64).build()) {
            Tensor x = leaf(r, 2, 3, 4);
            GradCheck.check("MultiheadAttention (softcap)", in -> m.forward(in[0]), withInput(x, m));
        }
    }

    @Test
    void transformerBlockAndBatchNorm() {
        Random r = new Random(7);
        try (Scope s = Scope.open();
             TransformerBlock blk = TransformerBlock.builder(4, 2).llama(6).params(F64).build();
             BatchNorm2d bn = new BatchNorm2d(3)) {
            GradCheck.check("TransformerBlock (llama)", GradCheck.Options.DEFAULT.withTolerance(1e-6, 1e-4),
                    in -> blk.forward(in[0]), withInput(leaf(r, 1, 3, 4), blk));
            // the op keeps gamma/beta in float32: check the input gradient only
            Tensor x = leaf(r, 2, 3, 2, 3);
            GradCheck.check("BatchNorm2d (x)", in -> bn.forward(in[0]), x);
        }
    }

    @Test
    void losses() {
        Random r = new Random(5);
        try (Scope s = Scope.open()) {
            Tensor logits = leaf(r, 3, 4);
            Tensor t = Tensor.of(new long[] {1, -100, 3}, 3);
            for (Reduction red : Reduction.values()) {
                GradCheck.check("crossEntropy " + red, in -> Losses.crossEntropy(in[0], t, red, -100, 0.1), logits);
                GradCheck.check("crossEntropyComposed " + red,
                        in -> Losses.crossEntropyComposed(in[0], t, red, -100, 0.1), logits);
                GradCheck.check("nll " + red, in -> {
                    try (Tensor lp = Normalization.logSoftmax(in[0], 1)) {
                        return Losses.nll(lp, t, red, -100);
                    }
                }, logits);
                Tensor a = leaf(r, 2, 3);
                Tensor b = leaf(r, 2, 3);
                GradCheck.check("mse " + red, in -> Losses.mse(in[0], in[1], red), a, b);
                GradCheck.check("l1 " + red, in -> Losses.l1(in[0], in[1], red), a, b);
                Tensor y = Tensor.of(Reference.uniform(r, 6, 0, 1), 2, 3);
                GradCheck.check("bceWithLogits " + red, in -> Losses.binaryCrossEntropyWithLogits(in[0], y, red), a);
                Tensor p = Tensor.of(new double[] {0.2, 0.3, 0.5, 0.1, 0.6, 0.3}, 2, 3);
                GradCheck.check("klDiv " + red, in -> {
                    try (Tensor lq = Normalization.logSoftmax(in[0], 1)) {
                        return Losses.klDiv(lq, p, red, false);
                    }
                }, a);
                Tensor lp = Tensor.of(new double[] {-1.6, -1.2, -0.7, -2.3, -0.5, -1.2}, 2, 3).requiresGrad(true);
                GradCheck.check("klDiv logTarget " + red, in -> {
                    try (Tensor lq = Normalization.logSoftmax(in[0], 1)) {
                        return Losses.klDiv(lq, in[1], red, true);
                    }
                }, a, lp);
                Tensor soft = Tensor.of(new double[] {0.1, 0.2, 0.3, 0.4, 0.25, 0.25, 0.25, 0.25, 1, 0, 0, 0}, 3, 4);
                GradCheck.check("crossEntropy soft " + red, in -> Losses.crossEntropy(in[0], soft, red, -100, 0), logits);
            }
        }
    }

    /** p -= lr * grad for every parameter, outside the tape; clears the gradients. */
    static void sgd(Module m, double lr) {
        try (Autograd.GradMode off = Autograd.noGrad()) {
            for (Tensor p : m.parameters()) {
                Tensor g = p.grad();
                assertNotNull(g, "every parameter gets a gradient");
                try (Tensor step = Elementwise.mul(g, lr); Tensor next = Elementwise.sub(p, step)) {
                    p.copyFrom(next);
                }
            }
        }
        m.zeroGrad();
    }

    @Test
    void tinyMlpOverfitsOneBatch() {
        Random r = new Random(6);
        int n = 16;
        int steps = 300;
        double threshold = 0.05;
        ParamOptions p = ParamOptions.seeded(6);
        try (Sequential mlp = new Sequential(new Linear(5, 32, true, p), Activation.tanh(), new Linear(32, 3, true, p));
             Tensor x = Reference.make(Reference.uniform(r, n * 5, -1, 1), DType.FLOAT32, n, 5);
             Tensor labels = Tensor.of(Reference.ints(r, n, 0, 2), n); // float64, closed too
             Tensor t = labels.to(DType.INT64)) {
            double first = 0;
            double last = 0;
            for (int step = 0; step < steps; step++) {
                try (Scope s = Scope.open()) {
                    Tensor loss = Losses.crossEntropy(mlp.forward(x), t);
                    last = loss.item();
                    if (step == 0) {
                        first = last;
                    }
                    loss.backward();
                }
                sgd(mlp, 0.5);
            }
            assertTrue(first > 0.8, "starts near log(3): " + first);
            System.out.printf("tiny MLP: cross entropy %.4f -> %.5f in %d SGD steps%n", first, last, steps);
            assertTrue(last < threshold, "loss after " + steps + " SGD steps: " + last + " (from " + first + ")");
        }
    }

    /** Forward, loss and backward without any scope: only the outputs the test closes were allocated. */
    @Test
    void forwardAndBackwardFreeTheirTemporaries() throws InterruptedException {
        dev.cortado.testing.LeakCheck.settle(); // the safety net has nothing to free while we count
        try (ModuleTest.TinyLm lm = new ModuleTest.TinyLm(3, 13, 8, 2);
             Tensor tokens = Tensor.of(new long[] {1, 5, 12, 0, 3, 3, 7, 2}, 2, 4);
             Tensor targets = Tensor.of(new long[] {5, 12, 0, 3, 3, 7, 2, 1}, 2, 4)) {
            long live = 0;
            for (int i = 0; i < 3; i++) {
                try (Tensor logits = lm.forward(tokens);
                     Tensor classDim1 = logits.permute(0, 2, 1);
                     Tensor loss = Losses.crossEntropy(classDim1, targets)) {
                    loss.backward();
                }
                lm.zeroGrad();
                long now = dev.cortado.backend.cpu.CpuBackend.liveAllocations();
                if (i > 0) {
                    assertEquals(live, now, "live host allocations after step " + i);
                }
                live = now;
            }
        }
    }

    @Test
    void dropoutGradientIsTheMask() {
        try (Scope s = Scope.open()) {
            Tensor x = Tensor.of(new double[] {1, 2, 3, 4, 5, 6, 7, 8}, 8).requiresGrad(true);
            Tensor y = F.dropout(x, 0.5, true, Generator.seeded(3));
            double[] yv = y.toDoubleArray();
            dev.cortado.ops.Reductions.sum(y).backward();
            double[] g = x.grad().toDoubleArray();
            for (int i = 0; i < 8; i++) {
                assertEquals(yv[i] == 0 ? 0 : 2, g[i], 1e-12);
            }
        }
    }
}
