package dev.cortado.optim;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.tensor.DType;
import dev.cortado.tensor.Tensor;
import dev.cortado.testing.Reference;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * Learning-rate schedules against hand-computed values (PyTorch's formulas evaluated by hand),
 * gradient clipping against a float64 Java norm, and the GradScaler's skip / backoff / growth.
 */
class ScheduleClipScalerTest {
    private static final double EPS = 1e-12;

    @Test
    void stepLr() {
        StepLr s = new StepLr(3, 0.1);
        double[] want = {1, 1, 1, 0.1, 0.1, 0.1, 0.01};
        for (int i = 0; i < want.length; i++) {
            assertEquals(want[i], s.factor(i), EPS, "step " + i);
        }
        assertEquals(0.5 * 0.01, s.lr(6, 0.5), EPS);
        assertThrows(IllegalArgumentException.class, () -> new StepLr(0, 0.1));
    }

    @Test
    void cosineWithWarmup() {
        CosineWithWarmup s = CosineWithWarmup.of(4, 14);
        assertEquals(0.0, s.factor(0), EPS);
        assertEquals(0.25, s.factor(1), EPS);
        assertEquals(0.75, s.factor(3), EPS);
        assertEquals(1.0, s.factor(4), EPS);
        // progress 5/10: 0.5 * (1 + cos(pi/2)) = 0.5
        assertEquals(0.5, s.factor(9), EPS);
        // step 6: progress 0.2, 0.5 * (1 + cos(0.2 pi)) = 0.904508497187...
        assertEquals(0.9045084971874737, s.factor(6), EPS);
        assertEquals(0.5 * (1 + Math.sqrt(0.5)), new CosineWithWarmup(0, 4, 0).factor(1), EPS);
        assertEquals(0.0, s.factor(14), EPS);
        assertEquals(0.0, s.factor(100), EPS);
        CosineWithWarmup floor = new CosineWithWarmup(0, 10, 0.1);
        assertEquals(0.1 + 0.9 * 0.5, floor.factor(5), EPS);
        assertEquals(0.1, floor.factor(10), EPS);
    }

    @Test
    void oneCycleMatchesPyTorch() {
        // OneCycleLR(max_lr=1, total_steps=10, pct_start=0.3, div 25, final_div 1e4): phase 1 ends
        // at step 2 (0.3*10 - 1), phase 2 at step 9.
        OneCycle s = OneCycle.of(10);
        double initial = 1.0 / 25;
        double min = initial / 1e4;
        assertEquals(initial, s.factor(0), EPS);
        // step 1: pct 0.5 -> 1 + (0.04 - 1)/2 * (cos(pi/2) + 1) = 0.52
        assertEquals(0.52, s.factor(1), EPS);
        assertEquals(1.0, s.factor(2), EPS);
        // step 5: pct (5-2)/7 -> min + (1 - min)/2 * (cos(3pi/7) + 1)
        assertEquals(min + (1 - min) / 2 * (Math.cos(Math.PI * 3 / 7) + 1), s.factor(5), EPS);
        assertEquals(min, s.factor(9), EPS);
        assertThrows(IllegalArgumentException.class, () -> s.factor(10));
    }

    @Test
    void scheduleAppliesToEveryGroup() {
        try (Tensor a = Tensor.of(new double[] {1}, 1); Tensor b = Tensor.of(new double[] {1}, 1);
             Sgd opt = Sgd.builder().lr(0.2).buildGroups(List.of(ParamGroup.of(a), ParamGroup.of(b).lr(0.02)))) {
            new StepLr(2, 0.5).apply(opt, 5);
            assertEquals(0.2 * 0.25, opt.groups().get(0).lr(), EPS);
            assertEquals(0.02 * 0.25, opt.groups().get(1).lr(), EPS);
            assertEquals(0.02, opt.groups().get(1).initialLr(), EPS);
        }
    }

    // ------------------------------------------------------------------ clipping
    @Test
    void clipByGlobalNorm() {
        Random r = new Random(3);
        long[][] shapes = {{5}, {1}, {0}, {3, 7}, {}};
        for (DType t : new DType[] {DType.FLOAT64, DType.FLOAT32, DType.BFLOAT16}) {
            List<Tensor> params = new ArrayList<>();
            List<double[]> g = new ArrayList<>();
            double ss = 0;
            try {
                for (long[] d : shapes) {
                    int n = OptimizerTest.numel(d);
                    Tensor p = Tensor.zeros(DType.FLOAT32, d);
                    Tensor gt = Reference.make(Reference.uniform(r, n, -2, 2), t, d);
                    double[] gv = gt.toDoubleArray();
                    p.setGrad(gt);
                    params.add(p);
                    g.add(gv);
                    for (double v : gv) {
                        ss += v * v;
                    }
                }
                Tensor noGrad = Tensor.zeros(DType.FLOAT32, 3);
                params.add(noGrad);
                double norm = Math.sqrt(ss);
                double tol = t == DType.FLOAT64 ? 1e-12 : 1e-6;
                assertEquals(norm, GradClip.globalNorm(params), tol * norm, t + " norm");
                // above the threshold: nothing changes
                assertEquals(norm, GradClip.clipByGlobalNorm(params, norm * 2), tol * norm);
                Reference.assertClose(g.get(0), params.get(0).grad().toDoubleArray(), Reference.tol(t), "untouched");
                // below: scaled to maxNorm
                double max = norm / 3;
                assertEquals(norm, GradClip.clipByGlobalNorm(params, max), tol * norm);
                double coef = max / (norm + 1e-6);
                for (int i = 0; i < shapes.length; i++) {
                    double[] want = g.get(i).clone();
                    for (int j = 0; j < want.length; j++) {
                        want[j] *= coef;
                    }
                    Reference.assertClose(want, params.get(i).grad().toDoubleArray(), Reference.tol(t), t + " clipped " + i);
                }
                assertEquals(max, GradClip.globalNorm(params), 1e-2 * max);
            } finally {
                params.forEach(Tensor::close);
            }
        }
    }

    /** Non-contiguous gradients (here a transposed view) are made contiguous, then clipped and stepped. */
    @Test
    void nonContiguousGradients() {
        try (Tensor p = Tensor.zeros(DType.FLOAT64, 2, 3); Tensor gBase = Tensor.of(new double[] {3, 0, 0, 4, 0, 0}, 3, 2);
             Sgd opt = Sgd.builder().lr(1).build(List.of(p))) {
            p.setGrad(gBase.transpose(0, 1));   // [[3, 0, 0], [0, 4, 0]]
            assertEquals(5.0, GradClip.clipByGlobalNorm(List.of(p), 1.0), 1e-12);
            assertTrue(p.grad().isContiguous());
            opt.step();
            Reference.assertClose(new double[] {-0.6, 0, 0, 0, -0.8, 0}, p.toDoubleArray(),
                    new Reference.Tol(1e-6, 1e-12), "clipped step (coefficient 1 / (5 + 1e-6))");
            Reference.assertExact(new double[] {3, 0, 0, 4, 0, 0}, gBase.toDoubleArray(), "source untouched");
        }
        try (Tensor p = Tensor.zeros(DType.FLOAT64, 2, 3); Tensor gBase = Tensor.of(new double[] {1, 2, 3, 4, 5, 6}, 3, 2);
             Sgd opt = Sgd.builder().lr(1).build(List.of(p))) {
            p.setGrad(gBase.transpose(0, 1));
            opt.step();   // the optimizer copies a non-contiguous gradient
            Reference.assertExact(new double[] {-1, -3, -5, -2, -4, -6}, p.toDoubleArray(), "strided grad step");
        }
    }

    /** The float64 sum of squares adds per-piece sums in piece order: identical on 1 and 2 threads. */
    @Test
    void sumOfSquaresDoesNotDependOnThreads() {
        int before = dev.cortado.backend.cpu.CpuBackend.threads();
        double[] a = Reference.uniform(new Random(4), 300_001, -1, 1);
        try (Tensor x = Reference.make(a, DType.FLOAT32, a.length)) {
            dev.cortado.backend.cpu.CpuBackend.setThreads(1);
            double one = OptimKernels.sumOfSquares(List.of(x));
            dev.cortado.backend.cpu.CpuBackend.setThreads(2);
            double two = OptimKernels.sumOfSquares(List.of(x));
            assertEquals(one, two, 0.0);
            double want = 0;
            for (float v : x.toFloatArray()) {
                want += (double) v * v;
            }
            assertEquals(want, one, 1e-12 * want);
        } finally {
            dev.cortado.backend.cpu.CpuBackend.setThreads(before);
        }
    }

    @Test
    void clipWithNonFiniteNormLeavesGradients() {
        try (Tensor p = Tensor.zeros(DType.FLOAT32, 2)) {
            p.setGrad(Tensor.of(new float[] {Float.POSITIVE_INFINITY, 1}, 2));
            assertTrue(Double.isInfinite(GradClip.clipByGlobalNorm(List.of(p), 1.0)));
            assertEquals(1.0, p.grad().toDoubleArray()[1]);
            p.setGrad(Tensor.of(new float[] {Float.NaN, 1}, 2));
            assertTrue(Double.isNaN(GradClip.globalNorm(List.of(p))));
        }
    }

    // ------------------------------------------------------------------ loss scaling
    @Test
    void gradScalerSkipsBacksOffAndGrows() {
        try (Tensor p = Tensor.of(new float[] {1, 2, 3}, 3);
             Sgd opt = Sgd.builder().lr(1).build(List.of(p))) {
            GradScaler scaler = GradScaler.builder().initScale(1024).growthFactor(2).backoffFactor(0.25)
                    .growthInterval(2).build();
            // a good step: gradients unscaled by 1/1024 before the update
            p.setGrad(Reference.make(new double[] {1024, 2048, -1024}, DType.FLOAT16, 3));
            assertTrue(scaler.step(opt));
            scaler.update();
            Reference.assertExact(new double[] {0, 0, 4}, p.toDoubleArray(), "after a good step");
            assertEquals(1024, scaler.getScale());
            // overflow: step skipped, scale backs off, growth counter resets
            p.setGrad(Reference.make(new double[] {1, Double.POSITIVE_INFINITY, 1}, DType.FLOAT16, 3));
            assertFalse(scaler.step(opt));
            scaler.update();
            Reference.assertExact(new double[] {0, 0, 4}, p.toDoubleArray(), "skipped step");
            assertEquals(256, scaler.getScale());
            assertEquals(1, scaler.skippedSteps());
            assertEquals(1, opt.stepCount());
            // NaN in float32 gradients is caught too
            p.setGrad(Tensor.of(new float[] {Float.NaN, 0, 0}, 3));
            assertTrue(scaler.unscale(opt));
            assertThrows(IllegalStateException.class, () -> scaler.unscale(opt));
            assertFalse(scaler.step(opt));
            scaler.update();
            assertEquals(64, scaler.getScale());
            // two good steps in a row: the scale grows
            for (int i = 0; i < 2; i++) {
                p.setGrad(Tensor.of(new float[] {64, 64, 64}, 3));
                assertTrue(scaler.step(opt));
                scaler.update();
            }
            assertEquals(128, scaler.getScale());
            Reference.assertExact(new double[] {-2, -2, 2}, p.toDoubleArray(), "after growth");
        }
    }

    @Test
    void unscaleAndCheckKernel() {
        for (DType t : new DType[] {DType.FLOAT64, DType.FLOAT32, DType.FLOAT16, DType.BFLOAT16}) {
            Random r = new Random(7);
            double[] a = Reference.uniform(r, 70_001, -4, 4);
            try (Tensor x = Reference.make(a, t, a.length); Tensor y = Reference.make(new double[] {2, 4}, t, 2);
                 Tensor empty = Reference.make(new double[0], t, 0)) {
                double[] xv = x.toDoubleArray();
                assertFalse(OptimKernels.unscaleAndCheck(List.of(x, empty, y), 0.5));
                for (int i = 0; i < xv.length; i++) {
                    xv[i] *= 0.5;
                }
                Reference.assertClose(xv, x.toDoubleArray(), Reference.tol(t), t + " unscaled");
                Reference.assertExact(new double[] {1, 2}, y.toDoubleArray(), t + " small");
                OptimKernels.scale(List.of(y), 4);
                Reference.assertExact(new double[] {4, 8}, y.toDoubleArray(), t + " scaled");
                double sq = OptimKernels.sumOfSquares(List.of(y, empty));
                assertEquals(80.0, sq, 0.0);
            }
        }
    }
}
