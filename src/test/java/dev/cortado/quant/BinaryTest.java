package dev.cortado.quant;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.autograd.Autograd;
import dev.cortado.backend.cpu.CpuBackend;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * The binary kernels beyond the OpInfo samples: the AVX-512 VPOPCNTDQ tile (and the path with
 * AVX-512 off) against the scalar popcnt reference on large odd shapes (exact: the sums are
 * integers); the modules' two paths (the float straight-through path used for training and the
 * bit-packed XNOR path used for inference) giving the same outputs (relative 1e-5); gradients
 * reaching the latent weights with the clip; a short training run; and bad input.
 */
class BinaryTest {

    private static Tensor randn(Random r, long... dims) {
        int n = 1;
        for (long d : dims) {
            n *= (int) d;
        }
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) r.nextGaussian();
        }
        return Tensor.of(v, dims);
    }

    private static void assertClose(float[] want, float[] got, double rel, String what) {
        assertEquals(want.length, got.length, what);
        double m = 0;
        for (float f : want) {
            m = Math.max(m, Math.abs(f));
        }
        for (int i = 0; i < want.length; i++) {
            if (!(Math.abs(want[i] - got[i]) <= rel * m)) {
                throw new AssertionError(what + ": element " + i + " is " + got[i] + ", expected " + want[i]);
            }
        }
    }

    @Test
    void popcountTileMatchesTheScalarReferenceExactly() {
        Random r = new Random(4);
        int[][] shapes = {{37, 70, 1000}, {5, 131, 4096}, {64, 64, 513}, {1, 3, 64}};
        for (int[] sh : shapes) {
            for (boolean avx512 : new boolean[] {true, false}) {
                boolean was = CpuBackend.avx512();
                CpuBackend.setAvx512Enabled(avx512 && was);
                try (Scope scope = Scope.open()) {
                    int m = sh[0];
                    int n = sh[1];
                    int k = sh[2];
                    Tensor a = Binary.binarize(randn(r, m, k));
                    Tensor b = Binary.binarize(randn(r, n, k));
                    Tensor fast = Binary.matmul(a, b, k, null, null);
                    Tensor ref = Tensor.empty(DType.FLOAT32, m, n);
                    Binary.matmulKernel((long) k, new Tensor[] {a, b}, new Tensor[] {ref}, true);
                    assertArrayEquals(ref.toFloatArray(), fast.toFloatArray(), 0f, "m=" + m + " n=" + n + " k=" + k + " avx512=" + avx512);
                } finally {
                    CpuBackend.setAvx512Enabled(was);
                }
            }
        }
    }

    @Test
    void linearTrainingAndInferencePathsAgree() {
        try (Scope scope = Scope.open(); BinaryLinear lin = new BinaryLinear(100, 37)) {
            Tensor x = randn(new Random(3), 2, 5, 100);
            Tensor train = lin.forward(x);
            float[] infer;
            try (var ng = Autograd.noGrad()) {
                infer = lin.forward(x).toFloatArray();
            }
            assertClose(train.toFloatArray(), infer, 1e-5, "BinaryLinear");
            Tensor loss = train.sum();
            loss.backward();
            Tensor g = lin.weight().grad();
            assertNotNull(g, "weight gradient");
            float[] w = lin.weight().toFloatArray();
            float[] gw = g.toFloatArray();
            boolean nonzero = false;
            for (int i = 0; i < w.length; i++) {
                nonzero |= gw[i] != 0;
            }
            assertTrue(nonzero, "the straight-through gradient reaches the weights");
        }
    }

    @Test
    void signSteClipsTheGradient() {
        try (Scope scope = Scope.open()) {
            Tensor x = Tensor.of(new float[] {-2f, -1f, -0.5f, 0f, 0.5f, 1f, 1.5f}, 7);
            x.requiresGrad(true);
            Tensor y = Binary.signSte(x);
            assertArrayEquals(new float[] {-1, -1, -1, 1, 1, 1, 1}, y.toFloatArray());
            y.sum().backward();
            assertArrayEquals(new float[] {0, 1, 1, 1, 1, 1, 0}, x.grad().toFloatArray());
        }
    }

    @Test
    void convTrainingAndInferencePathsAgree() {
        int[][] cases = {{70, 5, 3, 1, 1}, {64, 3, 3, 2, 0}, {3, 4, 1, 1, 0}, {130, 6, 3, 2, 2}};
        Random r = new Random(9);
        for (int[] c : cases) {
            try (Scope scope = Scope.open(); BinaryConv2d conv = new BinaryConv2d(c[0], c[1], c[2], c[3], c[4])) {
                Tensor x = randn(r, 2, c[0], 7, 6);
                Tensor train = conv.forward(x);
                float[] infer;
                try (var ng = Autograd.noGrad()) {
                    Tensor y = conv.forward(x);
                    assertArrayEquals(train.dims(), y.dims());
                    infer = y.toFloatArray();
                }
                assertClose(train.toFloatArray(), infer, 1e-5, "BinaryConv2d c=" + c[0] + " k=" + c[2] + " s=" + c[3] + " p=" + c[4]);
            }
        }
    }

    /** Mean loss of the last 30 of 300 Adam steps on y = sign(w* . sign(x)) with w* a fixed random +-1 vector of 32. */
    private static double signTaskLoss(boolean trainBinaryLayer) {
        return signTaskLoss(trainBinaryLayer, BinaryWeights.xnor());
    }

    private static double signTaskLoss(boolean trainBinaryLayer, BinaryWeights weights) {
        Random r = new Random(12);
        float[] wstar = new float[32];
        for (int j = 0; j < 32; j++) {
            wstar[j] = r.nextBoolean() ? 1 : -1;
        }
        try (Scope scope = Scope.open(); BinaryLinear lin = new BinaryLinear(32, 16, true, true, weights,
                dev.cortado.nn.ParamOptions.seeded(5));
             dev.cortado.nn.Linear head = new dev.cortado.nn.Linear(16, 1, true, dev.cortado.nn.ParamOptions.seeded(6))) {
            java.util.List<Tensor> params = new java.util.ArrayList<>(head.parameters());
            if (trainBinaryLayer) {
                params.addAll(lin.parameters());
            }
            double last = 0;
            try (dev.cortado.optim.Adam opt = dev.cortado.optim.Adam.builder().lr(0.01).build(params)) {
                for (int step = 0; step < 300; step++) {
                    try (Scope s = Scope.open()) {
                        Tensor x = randn(r, 64, 32);
                        float[] xv = x.toFloatArray();
                        float[] t = new float[64];
                        for (int i = 0; i < 64; i++) {
                            float sum = 0;
                            for (int j = 0; j < 32; j++) {
                                sum += wstar[j] * (xv[i * 32 + j] >= 0 ? 1 : -1);
                            }
                            t[i] = sum >= 0 ? 1 : -1;
                        }
                        Tensor d = head.forward(lin.forward(x)).sub(Tensor.of(t, 64, 1));
                        Tensor loss = d.mul(d).mean();
                        if (step >= 270) {
                            last += loss.item() / 30;
                        }
                        loss.backward();
                        opt.step();
                        opt.zeroGrad();
                        lin.zeroGrad();
                    }
                }
            }
            return last;
        }
    }

    @Test
    void binaryLinearLearnsThroughTheStraightThroughEstimator() {
        // with the binary layer frozen only the readout learns (random +-1 features of the signs);
        // training its latent weights through sign_ste (toward +-w*) must do clearly better
        double frozen = signTaskLoss(false);
        double trained = signTaskLoss(true);
        assertTrue(trained < 0.7 * frozen, "loss with the binary layer trained " + trained + ", frozen " + frozen);
    }

    @Test
    void biperIsASquareWaveTrainedThroughItsSine() {
        try (Scope scope = Scope.open()) {
            double omega = 20;
            // omega x = 0, 1, 4 (sin < 0 although x > 0), -1, -4 (sin > 0 although x < 0), 7
            float[] xs = {0f, 0.05f, 0.2f, -0.05f, -0.2f, 0.35f};
            Tensor x = Tensor.of(xs, xs.length);
            x.requiresGrad(true);
            Tensor y = Binary.biper(x, omega);
            assertArrayEquals(new float[] {1, 1, -1, -1, 1, 1}, y.toFloatArray());
            Tensor g = Tensor.of(new float[] {1, 2, -1, 0.5f, 3, -2}, xs.length);
            y.mul(g).sum().backward();
            float[] gx = x.grad().toFloatArray();
            float[] gv = g.toFloatArray();
            for (int i = 0; i < xs.length; i++) {
                double want = gv[i] * omega * Math.cos(omega * (double) xs[i]);
                assertEquals(want, gx[i], 1e-5 * Math.abs(want) + 1e-6, "d biper / dx at " + xs[i]);
            }
        }
    }

    /** y [m, n] = alpha_j sum_i x_i s_ji + b_j with s = sign(sin(omega W)), alpha = mean_i |sin(omega W_ji)|, in double. */
    private static double[] biperLinearReference(float[] x, float[] w, float[] b, int m, int k, int n, double omega) {
        double[] y = new double[m * n];
        for (int j = 0; j < n; j++) {
            double alpha = 0;
            for (int i = 0; i < k; i++) {
                alpha += Math.abs(Math.sin(omega * w[j * k + i])) / k;
            }
            for (int r = 0; r < m; r++) {
                double sum = 0;
                for (int i = 0; i < k; i++) {
                    sum += x[r * k + i] * (Math.sin(omega * w[j * k + i]) >= 0 ? 1 : -1);
                }
                y[r * n + j] = alpha * sum + b[j];
            }
        }
        return y;
    }

    @Test
    void biperLayersMatchTheirDefinitionOnBothPaths() {
        double omega = Binary.BIPER_OMEGA;
        for (boolean binaryInputs : new boolean[] {false, true}) {
            try (Scope scope = Scope.open(); BinaryLinear lin = new BinaryLinear(100, 37, true, binaryInputs,
                    BinaryWeights.biper(), dev.cortado.nn.ParamOptions.seeded(8))) {
                // the paper's initialization: He-normal, std sqrt(2 / fan_in)
                float[] w = lin.weight().toFloatArray();
                double var = 0;
                for (float v : w) {
                    var += (double) v * v / w.length;
                }
                assertEquals(Math.sqrt(2.0 / 100), Math.sqrt(var), 0.01, "He-normal latent weights");
                Tensor x = randn(new Random(3), 6, 100);
                float[] xv = x.toFloatArray();
                if (binaryInputs) {
                    for (int i = 0; i < xv.length; i++) {
                        xv[i] = xv[i] >= 0 ? 1 : -1;
                    }
                }
                double[] want = biperLinearReference(xv, w, lin.bias().toFloatArray(), 6, 100, 37, omega);
                float[] wantF = new float[want.length];
                for (int i = 0; i < want.length; i++) {
                    wantF[i] = (float) want[i];
                }
                Tensor train = lin.forward(x);
                assertClose(wantF, train.toFloatArray(), 1e-5, "BiPer BinaryLinear (training path), binary inputs " + binaryInputs);
                try (var ng = Autograd.noGrad()) {
                    assertClose(wantF, lin.forward(x).toFloatArray(), 1e-5,
                            "BiPer BinaryLinear (inference path), binary inputs " + binaryInputs);
                }
                train.sum().backward();
                assertNotNull(lin.weight().grad(), "the latent weights get BiPer's gradient");
            }
            try (Scope scope = Scope.open(); BinaryConv2d conv = new BinaryConv2d(70, 5, 3, 2, 1, true, binaryInputs,
                    BinaryWeights.biper(3), dev.cortado.nn.ParamOptions.seeded(9))) {
                Tensor x = randn(new Random(4), 2, 70, 7, 6);
                Tensor train = conv.forward(x);
                try (var ng = Autograd.noGrad()) {
                    assertClose(train.toFloatArray(), conv.forward(x).toFloatArray(), 1e-5,
                            "BiPer BinaryConv2d paths, binary inputs " + binaryInputs);
                }
            }
        }
    }

    @Test
    void binaryLinearLearnsThroughBiper() {
        double frozen = signTaskLoss(false, BinaryWeights.biper());
        double trained = signTaskLoss(true, BinaryWeights.biper());
        assertTrue(trained < 0.7 * frozen, "BiPer: loss with the binary layer trained " + trained + ", frozen " + frozen);
    }

    @Test
    void badInputIsAClearException() {
        try (Scope scope = Scope.open()) {
            Random r = new Random(2);
            Tensor a = Binary.binarize(randn(r, 3, 70));
            Tensor b = Binary.binarize(randn(r, 4, 70));
            String m = assertThrows(IllegalArgumentException.class, () -> Binary.matmul(a, b, 130, null, null)).getMessage();
            assertTrue(m.contains("binary_matmul") && m.contains("'a'") && m.contains("24"), m);
            m = assertThrows(IllegalArgumentException.class, () -> Binary.matmul(a, b, 70, randn(r, 3), null)).getMessage();
            assertTrue(m.contains("'alpha'") && m.contains("float32[4]"), m);
            Tensor nan = Tensor.of(new float[] {1, Float.NaN, 1, 1}, 4);
            m = assertThrows(RuntimeException.class, () -> Binary.matmul(a, b, 70, nan, null)).getMessage();
            assertTrue(m.contains("binary_matmul") && m.contains("alpha[1]"), m);
            m = assertThrows(IllegalArgumentException.class, () -> Binary.matmul(randn(r, 3, 16), b, 70, null, null)).getMessage();
            assertTrue(m.contains("binary_matmul") && m.contains("float32"), m);
            Tensor xb = Binary.binarize(randn(r, 1, 5, 5, 70));
            Tensor wb = Binary.binarize(randn(r, 2, 7, 7, 70));
            m = assertThrows(IllegalArgumentException.class,
                    () -> Binary.conv2d(xb, wb, null, new Binary.Conv(70, 1, 1, 0, 0))).getMessage();
            assertTrue(m.contains("binary_conv2d") && m.contains("does not fit"), m);
            m = assertThrows(IllegalArgumentException.class,
                    () -> Binary.conv2d(xb, wb, null, new Binary.Conv(200, 1, 1, 1, 1))).getMessage();
            assertTrue(m.contains("binary_conv2d") && m.contains("200 channels"), m);
            m = assertThrows(IllegalArgumentException.class, () -> Binary.signSte(Tensor.of(new int[] {1}, 1))).getMessage();
            assertTrue(m.contains("sign_ste"), m);
            Tensor f = randn(r, 3);
            for (double omega : new double[] {0, -1, Double.NaN, Double.POSITIVE_INFINITY}) {
                m = assertThrows(IllegalArgumentException.class, () -> Binary.biper(f, omega)).getMessage();
                assertTrue(m.contains("biper") && m.contains("omega"), m);
                assertThrows(IllegalArgumentException.class, () -> BinaryWeights.biper(omega));
            }
            m = assertThrows(IllegalArgumentException.class, () -> Binary.biper(Tensor.of(new int[] {1}, 1), 20)).getMessage();
            assertTrue(m.contains("biper") && m.contains("'x'"), m);
            // the backward ops: a gradient that is not x's shape and dtype
            Tensor x = randn(r, 3, 4);
            m = assertThrows(IllegalArgumentException.class,
                    () -> Binary.SIGN_STE_BACKWARD_OP.call(null, randn(r, 4, 3), x)).getMessage();
            assertTrue(m.startsWith("sign_ste_backward: g ") && m.contains("must have x's shape and dtype")
                    && m.contains("[4, 3]") && m.contains("[3, 4]"), m);
            m = assertThrows(IllegalArgumentException.class,
                    () -> Binary.BIPER_BACKWARD_OP.call(20.0, x.to(DType.FLOAT64), x)).getMessage();
            assertTrue(m.startsWith("biper_backward: g float64[3, 4]") && m.contains("x's shape and dtype"), m);
        }
    }
}
