package dev.cortado.optim;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.tensor.DType;
import dev.cortado.tensor.Tensor;
import dev.cortado.testing.Reference;
import dev.cortado.testing.Reference.Tol;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.function.Function;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * Every optimizer against an independent float64 Java implementation of PyTorch's update rules
 * (written from the torch.optim documentation, not from our coefficient mapping) over five steps
 * on fresh random parameters and gradients: odd sizes, a size-1, an empty and a rank-0 tensor,
 * two parameter groups with different lr and weight decay, and a parameter without a gradient
 * on one step (skipped: its state and step count stay). Tolerances: float64 rel 1e-12 abs 1e-14
 * (the kernel computes the same formulas in another association order); float32 rel 2e-5 abs
 * 2e-6 (float32 arithmetic and state rounding over five steps on values of magnitude ~1).
 */
class OptimizerTest {
    static final long[][] SHAPES_A = {{7}, {1}, {0}, {3, 5}};
    static final long[][] SHAPES_B = {{}, {2, 3, 4}};
    static final int STEPS = 5;

    static Tol tol(DType t) {
        return t == DType.FLOAT64 ? new Tol(1e-12, 1e-14) : new Tol(2e-5, 2e-6);
    }

    /** One reference update of one parameter: p, g (this step), state arrays, 1-based step, lr, wd. */
    interface RefStep {
        void step(double[] p, double[] g, double[][] s, long t, double lr, double wd);
    }

    static int numel(long[] d) {
        int n = 1;
        for (long x : d) {
            n *= (int) x;
        }
        return n;
    }

    /**
     * Runs {@code make} on two groups (A: lr 0.05 + the builder's weight decay; B: lr 0.01, weight
     * decay 0) against {@code ref}; compares params and states after every step.
     */
    static void check(String what, DType pt, DType gt, Function<List<ParamGroup>, Optimizer> make, RefStep ref,
                      double builderWd, long seed) {
        Random r = new Random(seed);
        List<Tensor> pa = new ArrayList<>();
        List<Tensor> pb = new ArrayList<>();
        List<long[]> dims = new ArrayList<>();
        List<double[]> want = new ArrayList<>();
        for (long[][] shapes : new long[][][] {SHAPES_A, SHAPES_B}) {
            for (long[] d : shapes) {
                Tensor p = Reference.make(Reference.uniform(r, numel(d), -1, 1), pt, d);
                (shapes == SHAPES_A ? pa : pb).add(p);
                dims.add(d);
                want.add(p.toDoubleArray());
            }
        }
        List<Tensor> all = new ArrayList<>(pa);
        all.addAll(pb);
        try (Optimizer opt = make.apply(List.of(ParamGroup.of(pa).lr(0.05), ParamGroup.of(pb).lr(0.01).weightDecay(0)))) {
            List<String> names = opt.stateNames();
            double[][][] st = new double[all.size()][][];
            long[] steps = new long[all.size()];
            for (int i = 0; i < all.size(); i++) {
                st[i] = new double[names.size()][numel(dims.get(i))];
                if (opt instanceof Adagrad a) {
                    for (double[] s : st[i]) {
                        java.util.Arrays.fill(s, a.options().get("initial_accumulator_value"));
                    }
                }
            }
            for (int step = 1; step <= STEPS; step++) {
                for (int i = 0; i < all.size(); i++) {
                    Tensor p = all.get(i);
                    if (step == 2 && i == 1) {
                        p.setGrad(null);   // skipped this step
                        continue;
                    }
                    Tensor g = Reference.make(Reference.uniform(r, numel(dims.get(i)), -1, 1), gt, dims.get(i));
                    double[] gv = g.toDoubleArray();   // the values as rounded to the gradient dtype
                    p.setGrad(g);
                    boolean groupA = i < pa.size();
                    steps[i]++;
                    ref.step(want.get(i), gv, st[i], steps[i], groupA ? 0.05 : 0.01, groupA ? builderWd : 0);
                }
                opt.step();
                assertEquals(step, opt.stepCount());
                for (int i = 0; i < all.size(); i++) {
                    String at = what + " " + pt + "/" + gt + " step " + step + " param " + i;
                    Reference.assertClose(want.get(i), all.get(i).toDoubleArray(), tol(pt), at);
                    assertEquals(steps[i], opt.paramStep(i), at + ": step count");
                    for (int k = 0; k < names.size(); k++) {
                        Reference.assertClose(st[i][k], opt.stateTensor(i, names.get(k)).toDoubleArray(), tol(pt),
                                at + " state " + names.get(k));
                    }
                }
            }
        } finally {
            all.forEach(Tensor::close);
        }
    }

    // ------------------------------------------------------------------ references (PyTorch's rules)
    static RefStep sgdRef(double momentum, double dampening, boolean nesterov) {
        return (p, g, s, t, lr, wd) -> {
            for (int j = 0; j < p.length; j++) {
                double d = g[j] + wd * p[j];
                if (momentum != 0) {
                    double b = t == 1 ? d : momentum * s[0][j] + (1 - dampening) * d;
                    s[0][j] = b;
                    d = nesterov ? d + momentum * b : b;
                }
                p[j] -= lr * d;
            }
        };
    }

    static RefStep adamRef(double b1, double b2, double eps, boolean decoupled, boolean amsgrad) {
        return (p, g, s, t, lr, wd) -> {
            double bc1 = 1 - Math.pow(b1, t);
            double bc2 = 1 - Math.pow(b2, t);
            for (int j = 0; j < p.length; j++) {
                double gr = g[j];
                if (decoupled) {
                    p[j] *= 1 - lr * wd;
                } else {
                    gr += wd * p[j];
                }
                s[0][j] = b1 * s[0][j] + (1 - b1) * gr;
                s[1][j] = b2 * s[1][j] + (1 - b2) * gr * gr;
                double v = s[1][j];
                if (amsgrad) {
                    s[2][j] = Math.max(s[2][j], v);
                    v = s[2][j];
                }
                double denom = Math.sqrt(v) / Math.sqrt(bc2) + eps;
                p[j] -= lr / bc1 * s[0][j] / denom;
            }
        };
    }

    static RefStep adagradRef(double lrDecay, double eps) {
        return (p, g, s, t, lr, wd) -> {
            double clr = lr / (1 + (t - 1) * lrDecay);
            for (int j = 0; j < p.length; j++) {
                double gr = g[j] + wd * p[j];
                s[0][j] += gr * gr;
                p[j] -= clr * gr / (Math.sqrt(s[0][j]) + eps);
            }
        };
    }

    enum Prec {
        F64(DType.FLOAT64, DType.FLOAT64), F32(DType.FLOAT32, DType.FLOAT32), F32_BF16(DType.FLOAT32, DType.BFLOAT16),
        F32_F16(DType.FLOAT32, DType.FLOAT16);

        final DType p;
        final DType g;

        Prec(DType p, DType g) {
            this.p = p;
            this.g = g;
        }
    }

    @ParameterizedTest
    @EnumSource(Prec.class)
    void sgdMatchesReference(Prec prec) {
        check("sgd", prec.p, prec.g, gs -> Sgd.builder().lr(0.1).buildGroups(gs), sgdRef(0, 0, false), 0, 1);
        check("sgd+wd", prec.p, prec.g, gs -> Sgd.builder().weightDecay(0.02).buildGroups(gs), sgdRef(0, 0, false),
                0.02, 2);
        check("momentum", prec.p, prec.g, gs -> Sgd.builder().momentum(0.9).dampening(0.1).weightDecay(0.01)
                .buildGroups(gs), sgdRef(0.9, 0.1, false), 0.01, 3);
        check("nesterov", prec.p, prec.g, gs -> Sgd.builder().momentum(0.8).nesterov(true).weightDecay(0.03)
                .buildGroups(gs), sgdRef(0.8, 0, true), 0.03, 4);
    }

    @ParameterizedTest
    @EnumSource(Prec.class)
    void adamMatchesReference(Prec prec) {
        check("adam", prec.p, prec.g, gs -> Adam.builder().buildGroups(gs), adamRef(0.9, 0.999, 1e-8, false, false),
                0, 11);
        check("adam+l2", prec.p, prec.g, gs -> Adam.builder().betas(0.8, 0.99).eps(1e-6).weightDecay(0.05)
                .buildGroups(gs), adamRef(0.8, 0.99, 1e-6, false, false), 0.05, 12);
        check("adamw", prec.p, prec.g, gs -> Adam.adamW().weightDecay(0.1).buildGroups(gs),
                adamRef(0.9, 0.999, 1e-8, true, false), 0.1, 13);
        check("adamw+amsgrad", prec.p, prec.g, gs -> Adam.adamW().amsgrad(true).buildGroups(gs),
                adamRef(0.9, 0.999, 1e-8, true, true), 0.01, 14);
        check("adam+amsgrad", prec.p, prec.g, gs -> Adam.builder().amsgrad(true).weightDecay(0.02).buildGroups(gs),
                adamRef(0.9, 0.999, 1e-8, false, true), 0.02, 15);
    }

    @ParameterizedTest
    @EnumSource(Prec.class)
    void adagradMatchesReference(Prec prec) {
        check("adagrad", prec.p, prec.g, gs -> Adagrad.builder().buildGroups(gs), adagradRef(0, 1e-10), 0, 21);
        check("adagrad+decay", prec.p, prec.g, gs -> Adagrad.builder().lrDecay(0.1).weightDecay(0.01)
                .initialAccumulatorValue(0.1).eps(1e-6).buildGroups(gs), adagradRef(0.1, 1e-6), 0.01, 22);
    }

    /** Tensors larger than one native piece (65536 elements) run on several threads: same result. */
    @Test
    void largeTensorsSplitIntoPieces() {
        Random r = new Random(5);
        long n = 3 * 65536 + 17;
        double[] p0 = Reference.uniform(r, (int) n, -1, 1);
        double[] g0 = Reference.uniform(r, (int) n, -1, 1);
        try (Tensor p = Reference.make(p0, DType.FLOAT64, n);
             Adam opt = Adam.adamW().lr(0.01).build(List.of(p))) {
            p.setGrad(Reference.make(g0, DType.FLOAT64, n));
            opt.step();
            double[] want = p0.clone();
            double[][] s = new double[2][(int) n];
            adamRef(0.9, 0.999, 1e-8, true, false).step(want, g0, s, 1, 0.01, 0.01);
            Reference.assertClose(want, p.toDoubleArray(), tol(DType.FLOAT64), "large adamw");
        }
    }

    @Test
    void zeroGradClearsOrZeros() {
        try (Tensor p = Tensor.of(new double[] {1, 2}, 2); Sgd opt = Sgd.builder().build(List.of(p))) {
            p.setGrad(Tensor.of(new double[] {3, 4}, 2));
            opt.zeroGradInPlace();
            assertEquals(0.0, p.grad().toDoubleArray()[1]);
            opt.zeroGrad();
            assertNull(p.grad());
            opt.step();   // no gradients: nothing happens
            assertEquals(2.0, p.toDoubleArray()[1]);
            assertEquals(0, opt.paramStep(0));
        }
    }

    // ------------------------------------------------------------------ bad input
    @Test
    void badInputGivesClearMessages() {
        try (Tensor base = Tensor.of(new double[] {1, 2, 3, 4, 5, 6}, 2, 3);
             Tensor view = base.transpose(0, 1);
             Adam opt = Adam.builder().build(List.of(view))) {
            view.setGrad(Tensor.of(new double[] {1, 1, 1, 1, 1, 1}, 3, 2));
            var e = assertThrows(IllegalArgumentException.class, opt::step);
            assertTrue(e.getMessage().contains("Adam.step") && e.getMessage().contains("not contiguous"),
                    e.getMessage());
        }
        try (Tensor p = Tensor.of(new float[] {1, 2}, 2); Sgd opt = Sgd.builder().build(List.of(p))) {
            p.setGrad(Tensor.of(new double[] {1, 2}, 2));
            var e = assertThrows(IllegalArgumentException.class, opt::step);
            assertTrue(e.getMessage().contains("float64") && e.getMessage().contains("float32"), e.getMessage());
        }
        try (Tensor p16 = Reference.make(new double[] {1, 2}, DType.FLOAT16, 2);
             Sgd opt = Sgd.builder().build(List.of(p16))) {
            p16.setGrad(Reference.make(new double[] {1, 2}, DType.FLOAT16, 2));
            var e = assertThrows(UnsupportedOperationException.class, opt::step);
            assertTrue(e.getMessage().contains("float16"), e.getMessage());
        }
        // grad shape != param shape (setGrad refuses it; the kernel functions check it too)
        try (Tensor p = Tensor.of(new double[] {1, 2, 3}, 3); Tensor g = Tensor.of(new double[] {1, 2}, 2);
             Tensor m = Tensor.zeros(DType.FLOAT64, 3); Tensor v = Tensor.zeros(DType.FLOAT64, 3)) {
            var e = assertThrows(IllegalArgumentException.class, () -> OptimKernels.adam(List.of(p), List.of(g),
                    List.of(m), List.of(v), null, OptimKernels.AdamCoef.pytorch(0.1, 0.9, 0.99, 1e-8, 0, false, 1)));
            assertTrue(e.getMessage().contains("grads[0]") && e.getMessage().contains("shapes differ"), e.getMessage());
            try (Tensor wrongShape = g.copy()) { // refused, so still ours to close
                assertThrows(IllegalArgumentException.class, () -> p.setGrad(wrongShape));
            }
        }
        // the same tensor in two groups
        try (Tensor p = Tensor.of(new double[] {1}, 1)) {
            var e = assertThrows(IllegalArgumentException.class,
                    () -> Sgd.builder().buildGroups(List.of(ParamGroup.of(p), ParamGroup.of(p))));
            assertTrue(e.getMessage().contains("appears twice"), e.getMessage());
        }
        assertThrows(IllegalArgumentException.class, () -> Sgd.builder().nesterov(true).build(List.of()));
        assertThrows(IllegalArgumentException.class, () -> Adam.builder().betas(1.0, 0.9));
    }

    /** A failed check leaves every parameter untouched. */
    @Test
    void failedStepChangesNothing() {
        try (Tensor a = Tensor.of(new double[] {1, 2}, 2); Tensor b16 = Reference.make(new double[] {1}, DType.FLOAT16, 1);
             Sgd opt = Sgd.builder().lr(1).build(List.of(a, b16))) {
            a.setGrad(Tensor.of(new double[] {1, 1}, 2));
            b16.setGrad(Reference.make(new double[] {1}, DType.FLOAT16, 1));
            assertThrows(UnsupportedOperationException.class, opt::step);
            assertEquals(1.0, a.toDoubleArray()[0]);
        }
    }

    // ------------------------------------------------------------------ checkpoints
    @Test
    void stateRoundTripContinuesIdentically() {
        Random r = new Random(9);
        double[] init = Reference.uniform(r, 11, -1, 1);
        double[][] grads = new double[4][];
        for (int s = 0; s < 4; s++) {
            grads[s] = Reference.uniform(r, 11, -1, 1);
        }
        try (Tensor p1 = Tensor.of(init.clone(), 11); Tensor p2 = Tensor.of(init.clone(), 11);
             Adam a = Adam.adamW().amsgrad(true).build(List.of(p1));
             Adam b = Adam.adamW().amsgrad(true).build(List.of(p2))) {
            for (int s = 0; s < 2; s++) {
                p1.setGrad(Tensor.of(grads[s].clone(), 11));
                a.step();
            }
            p2.copyFrom(p1);
            Map<String, Tensor> saved = a.state();
            try {
                assertTrue(saved.containsKey("state.0.exp_avg") && saved.containsKey("state.0.step")
                        && saved.containsKey("group.0.lr") && saved.containsKey("options.beta1"), saved.keySet().toString());
                assertEquals(2.0, saved.get("state.0.step").item());
                b.loadState(saved);
            } finally {
                saved.values().forEach(Tensor::close);
            }
            assertEquals(2, b.stepCount());
            for (int s = 2; s < 4; s++) {
                p1.setGrad(Tensor.of(grads[s].clone(), 11));
                p2.setGrad(Tensor.of(grads[s].clone(), 11));
                a.step();
                b.step();
            }
            Reference.assertExact(p1.toDoubleArray(), p2.toDoubleArray(), "resumed AdamW");
        }
    }

    @Test
    void loadStateRejectsMismatches() {
        try (Tensor p = Tensor.of(new double[] {1, 2, 3}, 3); Adam adam = Adam.builder().build(List.of(p));
             Tensor q = Tensor.of(new double[] {1, 2, 3}, 3); Sgd sgd = Sgd.builder().momentum(0.9).build(List.of(q))) {
            q.setGrad(Tensor.of(new double[] {1, 1, 1}, 3));
            sgd.step();
            Map<String, Tensor> sgdState = sgd.state();
            try {
                var e = assertThrows(IllegalArgumentException.class, () -> adam.loadState(sgdState));
                assertTrue(e.getMessage().contains("momentum_buffer") && e.getMessage().contains("exp_avg"),
                        e.getMessage());
            } finally {
                sgdState.values().forEach(Tensor::close);
            }
            try (Tensor wrong = Tensor.zeros(DType.FLOAT64, 4); Tensor one = Tensor.scalar(1, DType.FLOAT64,
                    dev.cortado.tensor.Device.CPU)) {
                var e = assertThrows(IllegalArgumentException.class, () -> sgd.loadState(Map.of(
                        "state.0.momentum_buffer", wrong, "state.0.step", one)));
                assertTrue(e.getMessage().contains("shapes differ") && e.getMessage().contains("[4]"), e.getMessage());
                e = assertThrows(IllegalArgumentException.class, () -> sgd.loadState(Map.of("state.5.step", one)));
                assertTrue(e.getMessage().contains("parameter 5"), e.getMessage());
                e = assertThrows(IllegalArgumentException.class, () -> sgd.loadState(Map.of("state.0.step", one)));
                assertTrue(e.getMessage().contains("incomplete") && e.getMessage().contains("momentum_buffer"),
                        e.getMessage());
                e = assertThrows(IllegalArgumentException.class, () -> sgd.loadState(Map.of("weights", one)));
                assertTrue(e.getMessage().contains("unknown entry 'weights'"), e.getMessage());
            }
            // nothing changed by the failed loads
            assertEquals(1, sgd.paramStep(0));
        }
    }
}
