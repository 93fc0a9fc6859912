package dev.cortado.gpu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.backend.cuda.CudaBackend;
import dev.cortado.optim.Adam;
import dev.cortado.optim.GradClip;
import dev.cortado.optim.OptimKernels;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import dev.cortado.testing.Reference;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.function.Consumer;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * Every CUDA optimizer kernel ({@code native/cuda/optim.cu}) against its CPU twin on the same
 * fresh random inputs: 21 tensors per call (more than one 16-tensor launch pack) with odd
 * sizes, a size-1, an empty and a 100003-element tensor; parameter/gradient dtypes F64/F64,
 * F32/F32, F32/BF16, F32/F16; three steps. Tolerances: float64 rel 1e-12; float32 rel 1e-5 +
 * abs 1e-6 (the devices may contract a*b+c into FMAs differently). Run with {@code mvn verify -Pgpu}.
 */
@Tag("gpu")
class CudaOptimTest {
    private static final Device GPU = Device.cuda(0);
    private static final long[] SIZES = {1, 0, 7, 33, 100_003, 256, 255, 1000, 3, 5, 17, 4096, 4097, 1, 2, 9, 65, 129,
        31, 12345, 8};

    @BeforeAll
    static void requireGpu() {
        Assumptions.assumeTrue(GPU.isAvailable(), () -> "no usable CUDA device: "
                + CudaBackend.instance().unavailableReason());
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

    private static Reference.Tol tol(DType t) {
        return t == DType.FLOAT64 ? new Reference.Tol(1e-12, 1e-14) : new Reference.Tol(1e-5, 1e-6);
    }

    /** Same values on both devices: lists [params, grads, state0, state1, state2]. */
    private record Twin(List<List<Tensor>> cpu, List<List<Tensor>> gpu) {
    }

    private static Twin twin(Prec prec, int states, long seed) {
        Random r = new Random(seed);
        List<List<Tensor>> cpu = new ArrayList<>();
        List<List<Tensor>> gpu = new ArrayList<>();
        for (int k = 0; k < 2 + states; k++) {
            List<Tensor> c = new ArrayList<>();
            List<Tensor> g = new ArrayList<>();
            for (long n : SIZES) {
                DType t = k == 1 ? prec.g : prec.p;
                // second moments / accumulators must be >= 0
                double lo = k >= 3 || (k == 2 && states == 1) ? 0 : -1;
                Tensor x = Reference.make(Reference.uniform(r, (int) n, lo, 1), t, n);
                c.add(x);
                g.add(x.to(GPU));
            }
            cpu.add(c);
            gpu.add(g);
        }
        return new Twin(cpu, gpu);
    }

    private static void compare(Twin t, DType pt, String what) {
        for (int k = 0; k < t.cpu().size(); k++) {
            if (k == 1) {
                continue;   // gradients are read only
            }
            for (int i = 0; i < SIZES.length; i++) {
                try (Tensor back = t.gpu().get(k).get(i).cpu()) {
                    Reference.assertClose(t.cpu().get(k).get(i).toDoubleArray(), back.toDoubleArray(), tol(pt),
                            what + " operand " + k + " tensor " + i);
                }
            }
        }
    }

    @SuppressWarnings("try")
    private static void run(Prec prec, int states, String what, Consumer<List<List<Tensor>>> step) {
        try (Scope scope = Scope.open()) {
            Twin t = twin(prec, states, what.hashCode());
            for (int s = 0; s < 3; s++) {
                step.accept(t.cpu());
                step.accept(t.gpu());
                compare(t, prec.p, what + " " + prec + " step " + (s + 1));
            }
        }
    }

    @ParameterizedTest
    @EnumSource(Prec.class)
    void sgd(Prec prec) {
        run(prec, 0, "sgd", l -> OptimKernels.sgd(l.get(0), l.get(1), null,
                new OptimKernels.SgdCoef(0.1, 0.01, 0, 1, false, 1)));
        run(prec, 1, "momentum", l -> OptimKernels.sgd(l.get(0), l.get(1), l.get(2),
                new OptimKernels.SgdCoef(0.1, 0.01, 0.9, 0.8, false, 0.5)));
        run(prec, 1, "nesterov", l -> OptimKernels.sgd(l.get(0), l.get(1), l.get(2),
                new OptimKernels.SgdCoef(0.1, 0.0, 0.9, 1, true, 1)));
    }

    @ParameterizedTest
    @EnumSource(Prec.class)
    void adam(Prec prec) {
        run(prec, 2, "adamw", l -> OptimKernels.adam(l.get(0), l.get(1), l.get(2), l.get(3), null,
                OptimKernels.AdamCoef.pytorch(1e-2, 0.9, 0.999, 1e-8, 0.1, true, 3)));
        run(prec, 3, "adam+amsgrad", l -> OptimKernels.adam(l.get(0), l.get(1), l.get(2), l.get(3), l.get(4),
                OptimKernels.AdamCoef.pytorch(1e-2, 0.8, 0.99, 1e-6, 0.05, false, 2)));
        run(prec, 2, "adam onnx", l -> OptimKernels.adam(l.get(0), l.get(1), l.get(2), l.get(3), null,
                OptimKernels.AdamCoef.onnx(0.1, 2, 0.9, 0.99, 1e-3, 0.01, 0.02)));
    }

    @ParameterizedTest
    @EnumSource(Prec.class)
    void adagrad(Prec prec) {
        run(prec, 1, "adagrad", l -> OptimKernels.adagrad(l.get(0), l.get(1), l.get(2),
                OptimKernels.AdagradCoef.pytorch(0.1, 0.01, 0.02, 1e-10, 2)));
    }

    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"FLOAT64", "FLOAT32", "FLOAT16", "BFLOAT16"})
    @SuppressWarnings("try")
    void sumScaleUnscale(DType t) {
        try (Scope scope = Scope.open()) {
            Random r = new Random(11);
            List<Tensor> cpu = new ArrayList<>();
            List<Tensor> gpu = new ArrayList<>();
            for (long n : SIZES) {
                Tensor x = Reference.make(Reference.uniform(r, (int) n, -2, 2), t, n);
                cpu.add(x);
                gpu.add(x.to(GPU));
            }
            double a = OptimKernels.sumOfSquares(cpu);
            double b = OptimKernels.sumOfSquares(gpu);
            assertEquals(a, b, 1e-12 * a, t + " sum of squares");
            OptimKernels.scale(cpu, 0.75);
            OptimKernels.scale(gpu, 0.75);
            assertFalse(OptimKernels.unscaleAndCheck(cpu, 0.5));
            assertFalse(OptimKernels.unscaleAndCheck(gpu, 0.5));
            for (int i = 0; i < SIZES.length; i++) {
                try (Tensor back = gpu.get(i).cpu()) {
                    Reference.assertExact(cpu.get(i).toDoubleArray(), back.toDoubleArray(), t + " scaled " + i);
                }
            }
            Tensor bad = Reference.make(new double[] {1, Double.POSITIVE_INFINITY, 2}, t, 3).to(GPU);
            gpu.add(bad);
            assertTrue(OptimKernels.unscaleAndCheck(gpu, 0.5));
        }
    }

    /** The high-level optimizer and clipping on CUDA parameters match the same run on the CPU. */
    @Test
    @SuppressWarnings("try")
    void adamWOptimizerOnCuda() {
        try (Scope scope = Scope.open()) {
            Random r = new Random(3);
            List<Tensor> pc = new ArrayList<>();
            List<Tensor> pg = new ArrayList<>();
            for (long n : SIZES) {
                Tensor p = Reference.make(Reference.uniform(r, (int) n, -1, 1), DType.FLOAT32, n);
                pc.add(p);
                pg.add(p.to(GPU));
            }
            try (Adam a = Adam.adamW().lr(1e-2).build(pc); Adam b = Adam.adamW().lr(1e-2).build(pg)) {
                for (int s = 0; s < 3; s++) {
                    for (int i = 0; i < SIZES.length; i++) {
                        Tensor g = Reference.make(Reference.uniform(r, (int) SIZES[i], -1, 1), DType.FLOAT32, SIZES[i]);
                        pg.get(i).setGrad(g.to(GPU));
                        pc.get(i).setGrad(g);
                    }
                    double na = GradClip.clipByGlobalNorm(pc, 10);
                    double nb = GradClip.clipByGlobalNorm(pg, 10);
                    assertEquals(na, nb, 1e-9 * na);
                    a.step();
                    b.step();
                }
            }
            for (int i = 0; i < SIZES.length; i++) {
                try (Tensor back = pg.get(i).cpu()) {
                    Reference.assertClose(pc.get(i).toDoubleArray(), back.toDoubleArray(), tol(DType.FLOAT32),
                            "AdamW on cuda, param " + i);
                }
            }
        }
    }
}
