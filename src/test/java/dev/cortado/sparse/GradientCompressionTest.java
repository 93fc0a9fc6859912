package dev.cortado.sparse;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.optim.Sgd;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.HashSet;
import java.util.List;
import java.util.Random;
import java.util.Set;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;

/**
 * Deep Gradient Compression against a float64 Java model of the algorithm (top-k of the
 * residual by magnitude, residual and velocity bookkeeping, momentum correction and factor
 * masking, weight decay, local clipping), the exact conservation of gradient mass without
 * momentum, the density schedule, the exchange's sum, and bad input. The MNIST accuracy of the
 * W = 4 simulation is in {@link DgcMnistTest}.
 */
class GradientCompressionTest {
    private static final long[][] SHAPES = {{37, 11}, {5}, {1, 1}, {3, 1, 7}};

    private static List<Tensor> params(Random r, DType dtype) {
        List<Tensor> ps = new ArrayList<>();
        for (long[] s : SHAPES) {
            int n = (int) Arrays.stream(s).reduce(1, (a, b) -> a * b);
            double[] v = r.doubles(n, -1, 1).toArray();
            try (Tensor t = Tensor.of(v, s)) {
                ps.add(t.to(dtype).requiresGrad(true));
            }
        }
        return ps;
    }

    private static double[][] randomGrads(Random r, List<Tensor> ps) {
        double[][] g = new double[ps.size()][];
        for (int i = 0; i < ps.size(); i++) {
            // heavy-tailed values, distinct magnitudes
            g[i] = r.doubles(ps.get(i).numel(), -1, 1).map(x -> x * Math.exp(2 * r.nextGaussian())).toArray();
        }
        return g;
    }

    private static void setGrads(List<Tensor> ps, double[][] g) {
        for (int i = 0; i < ps.size(); i++) {
            Tensor p = ps.get(i);
            try (Tensor t = Tensor.of(g[i], p.dims())) {
                p.setGrad(t.to(p.dtype()));
            }
        }
    }

    /** Positions of the k largest |x|, as a set (the reference of the top-k selection). */
    private static Set<Integer> topK(double[] x, int k) {
        Integer[] order = IntStream.range(0, x.length).boxed().toArray(Integer[]::new);
        Arrays.sort(order, Comparator.comparingDouble((Integer i) -> -Math.abs(x[i])));
        return new HashSet<>(Arrays.asList(order).subList(0, k));
    }

    private static void closeAll(List<Tensor> ps) {
        ps.forEach(Tensor::close);
    }

    /**
     * Momentum 0.9, weight decay, clipping and a changing density, against the float64 model
     * of the algorithm: the sent positions are the top-k of |v|, the sent values, residuals and
     * velocities match (float64 parameters, tolerance 1e-12 relative).
     */
    @Test
    void matchesTheAlgorithmInFloat64() {
        Random r = new Random(11);
        List<Tensor> ps = params(r, DType.FLOAT64);
        double momentum = 0.9;
        double wd = 0.01;
        double clip = 4.0;
        DensitySchedule schedule = DensitySchedule.warmup(2, 0.25, 0.05, 0.01);
        double[][] p0 = new double[ps.size()][];
        for (int i = 0; i < ps.size(); i++) {
            p0[i] = ps.get(i).toDoubleArray();
        }
        double[][] u = new double[ps.size()][];
        double[][] v = new double[ps.size()][];
        for (int i = 0; i < ps.size(); i++) {
            u[i] = new double[p0[i].length];
            v[i] = new double[p0[i].length];
        }
        try (DeepGradientCompression dgc = DeepGradientCompression.builder().density(schedule).momentum(momentum)
                .weightDecay(wd).clipNorm(clip).build(ps)) {
            for (int step = 0; step < 7; step++) {
                double[][] g = randomGrads(r, ps);
                setGrads(ps, g);
                double d = schedule.density(step);
                assertEquals(d, dgc.density());
                double sq = 0;
                for (int i = 0; i < ps.size(); i++) {
                    for (int j = 0; j < g[i].length; j++) {
                        g[i][j] += wd * p0[i][j];
                        sq += g[i][j] * g[i][j];
                    }
                }
                double scale = Math.sqrt(sq) > clip ? clip / Math.sqrt(sq) : 1;
                try (CompressedGradients sent = dgc.compress()) {
                    assertEquals(ps.size(), sent.parts().size());
                    for (int i = 0; i < ps.size(); i++) {
                        for (int j = 0; j < g[i].length; j++) {
                            u[i][j] = momentum * u[i][j] + g[i][j] * scale;
                            v[i][j] += u[i][j];
                        }
                        int k = (int) DeepGradientCompression.count(g[i].length, d);
                        CompressedGradients.Part part = sent.parts().get(i);
                        assertEquals(k, part.count(), "values sent of tensor " + i + " at step " + step);
                        long[] idx = part.indices().toLongArray();
                        double[] val = part.values().toDoubleArray();
                        Set<Integer> chosen = new HashSet<>();
                        for (long x : idx) {
                            chosen.add((int) x);
                        }
                        assertEquals(topK(v[i], k), chosen, "top-k positions of tensor " + i + " at step " + step);
                        for (int e = 0; e < k; e++) {
                            int j = (int) idx[e];
                            assertEquals(v[i][j], val[e], 1e-12 * Math.max(1, Math.abs(v[i][j])));
                            v[i][j] = 0;
                            u[i][j] = 0;
                        }
                        assertClose(v[i], dgc.residual(i).toDoubleArray(), "residual " + i);
                        assertClose(u[i], dgc.velocity(i).toDoubleArray(), "velocity " + i);
                    }
                }
            }
            assertEquals(7, dgc.step());
        } finally {
            closeAll(ps);
        }
    }

    private static void assertClose(double[] want, double[] got, String what) {
        assertEquals(want.length, got.length, what);
        for (int j = 0; j < want.length; j++) {
            assertEquals(want[j], got[j], 1e-12 * Math.max(1, Math.abs(want[j])), what + " at " + j);
        }
    }

    /**
     * Without momentum every gradient value is either sent once or still in the residual: sum of
     * everything sent + residual == sum of the gradients (float32 gradients; the float32
     * accumulation order differs from the float64 sum, so the bound is float32 rounding of the
     * running sums). Sent positions are distinct within a step.
     */
    @Test
    void sentPlusResidualIsTheSumOfTheGradients() {
        Random r = new Random(5);
        List<Tensor> ps = params(r, DType.FLOAT32);
        double[][] total = new double[ps.size()][];
        double[][] sentSum = new double[ps.size()][];
        double[][] magnitude = new double[ps.size()][];
        for (int i = 0; i < ps.size(); i++) {
            total[i] = new double[(int) ps.get(i).numel()];
            sentSum[i] = new double[total[i].length];
            magnitude[i] = new double[total[i].length];
        }
        try (DeepGradientCompression dgc = DeepGradientCompression.builder().density(0.03).build(ps)) {
            for (int step = 0; step < 20; step++) {
                double[][] g = randomGrads(r, ps);
                setGrads(ps, g);
                try (CompressedGradients sent = dgc.compress()) {
                    for (int i = 0; i < ps.size(); i++) {
                        float[] g32 = ps.get(i).grad().toFloatArray();
                        for (int j = 0; j < g32.length; j++) {
                            total[i][j] += g32[j];
                            magnitude[i][j] += Math.abs(g32[j]);
                        }
                        CompressedGradients.Part part = sent.parts().get(i);
                        long[] idx = part.indices().toLongArray();
                        assertEquals(idx.length, Arrays.stream(idx).distinct().count(), "distinct positions");
                        try (Tensor dense = sent.decompress(i)) {
                            assertEquals(ps.get(i).shape(), dense.shape());
                            double[] d = dense.toDoubleArray();
                            for (int j = 0; j < d.length; j++) {
                                sentSum[i][j] += d[j];
                            }
                        }
                    }
                }
            }
            for (int i = 0; i < ps.size(); i++) {
                double[] res = dgc.residual(i).toDoubleArray();
                assertNull(dgc.velocity(i));
                for (int j = 0; j < res.length; j++) {
                    assertEquals(total[i][j], sentSum[i][j] + res[j], 1e-6 * magnitude[i][j] + 1e-30,
                            "tensor " + i + " element " + j);
                }
            }
        } finally {
            closeAll(ps);
        }
    }

    /** The exchange: the sum of W workers' messages equals the sum of their decompressions, scaled. */
    @Test
    void exchangeSumsTheWorkersMessages() {
        Random r = new Random(9);
        List<Tensor> ps = params(r, DType.FLOAT32);
        List<DeepGradientCompression> workers = new ArrayList<>();
        List<CompressedGradients> messages = new ArrayList<>();
        try {
            for (int w = 0; w < 3; w++) {
                workers.add(DeepGradientCompression.builder().density(0.2).build(ps));
                setGrads(ps, randomGrads(r, ps));
                messages.add(workers.get(w).compress());
            }
            List<Tensor> sum = CompressedGradients.sum(messages, 1.0 / 3);
            try {
                for (int i = 0; i < ps.size(); i++) {
                    double[] want = new double[(int) ps.get(i).numel()];
                    for (CompressedGradients m : messages) {
                        try (Tensor d = m.decompress(i)) {
                            double[] x = d.toDoubleArray();
                            for (int j = 0; j < want.length; j++) {
                                want[j] += x[j] / 3;
                            }
                        }
                    }
                    assertEquals(ps.get(i).shape(), sum.get(i).shape());
                    double[] got = sum.get(i).toDoubleArray();
                    for (int j = 0; j < want.length; j++) {
                        assertEquals(want[j], got[j], 1e-6 * Math.max(1, Math.abs(want[j])));
                    }
                    // each worker sent ceil(0.2 n) values, the bytes are values and int32 indices
                }
                long n = ps.stream().mapToLong(Tensor::numel).sum();
                CompressedGradients m0 = messages.get(0);
                assertEquals(n, m0.denseValues());
                assertEquals(4 * n, m0.denseBytes());
                assertEquals(8 * m0.valuesSent(), m0.bytesSent());
            } finally {
                sum.forEach(Tensor::close);
            }
        } finally {
            messages.forEach(CompressedGradients::close);
            workers.forEach(DeepGradientCompression::close);
            closeAll(ps);
        }
    }

    @Test
    void densityScheduleWarmsUp() {
        DensitySchedule s = DensitySchedule.warmup(10, 0.25, 0.0625, 0.015625, 0.004, 0.001);
        assertEquals(0.25, s.density(0));
        assertEquals(0.25, s.density(9));
        assertEquals(0.0625, s.density(10));
        assertEquals(0.004, s.density(39));
        assertEquals(0.001, s.density(40));
        assertEquals(0.001, s.density(1_000_000));
        assertEquals(1, DeepGradientCompression.count(1, 0.001));
        assertEquals(101, DeepGradientCompression.count(100_352, 0.001));
        assertEquals(100, DeepGradientCompression.count(100_000, 0.001));
        assertEquals(0, DeepGradientCompression.count(0, 0.5));
    }

    @Test
    void badInputIsRejected() {
        assertThrows(IllegalArgumentException.class, () -> DensitySchedule.constant(0));
        assertThrows(IllegalArgumentException.class, () -> DensitySchedule.constant(1.5));
        assertThrows(IllegalArgumentException.class, () -> DensitySchedule.warmup(0, 0.1));
        assertThrows(IllegalArgumentException.class, () -> DeepGradientCompression.builder().momentum(1));
        assertThrows(IllegalArgumentException.class, () -> DeepGradientCompression.builder().build(List.of()));
        Random r = new Random(3);
        List<Tensor> ps = params(r, DType.FLOAT32);
        try (Sgd sgd = Sgd.builder().lr(0.1).build(ps);
             DataParallelSimulation sim = DataParallelSimulation.compressed(4, ps, sgd, DeepGradientCompression::builder);
             Tensor x = Tensor.zeros(DType.FLOAT32, 6, 3);
             Tensor y = Tensor.zeros(DType.INT64, 6)) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> sim.step(x, y, (a, b) -> a.sum()));
            assertTrue(e.getMessage().contains("multiple of 4 workers"), e.getMessage());
        } finally {
            closeAll(ps);
        }
    }
}
