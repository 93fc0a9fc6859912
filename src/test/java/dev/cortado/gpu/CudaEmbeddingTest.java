package dev.cortado.gpu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.backend.cuda.CudaBackend;
import dev.cortado.nn.EmbeddingBag;
import dev.cortado.nn.ParamOptions;
import dev.cortado.ops.Launch;
import dev.cortado.sparse.CompressedGradients;
import dev.cortado.sparse.DeepGradientCompression;
import dev.cortado.sparse.RowSparseGradient;
import dev.cortado.sparse.RowSparseOptimizer;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * The row-sparse optimizer kernels ({@code native/cuda/embedding.cu}), the sparse-mode embedding
 * bag and Deep Gradient Compression on CUDA tensors against the same calls on the CPU, on fresh
 * random inputs: lazy SGD with momentum and Nesterov and lazy Adam over three steps on a
 * 1001 x 33 table (float32 and float64), the embedding bag's output and row-sparse gradient, one
 * DGC step's sent indices and residual; a repeated and an out-of-range row get the CPU's status on
 * the GPU and nothing is written.
 * Tolerances: float64 rel 1e-12, float32 rel 1e-5 + abs 1e-6. Run with {@code mvn verify -Pgpu}.
 */
@Tag("gpu")
class CudaEmbeddingTest {
    private static final Device GPU = Device.cuda(0);

    @BeforeAll
    static void requireGpu() {
        Assumptions.assumeTrue(GPU.isAvailable(), () -> "no usable CUDA device: "
                + CudaBackend.instance().unavailableReason());
    }

    private static void assertClose(double[] want, double[] got, DType t, String what) {
        double rel = t == DType.FLOAT64 ? 1e-12 : 1e-5;
        double abs = t == DType.FLOAT64 ? 1e-14 : 1e-6;
        assertEquals(want.length, got.length, what);
        for (int i = 0; i < want.length; i++) {
            assertEquals(want[i], got[i], abs + rel * Math.abs(want[i]), what + " at " + i);
        }
    }

    @Test
    void rowSparseOptimizersMatchTheCpu() {
        Random r = new Random(1);
        for (DType t : new DType[] {DType.FLOAT32, DType.FLOAT64}) {
            for (int variant = 0; variant < 3; variant++) {
                RowSparseOptimizer.Builder b = variant == 2 ? RowSparseOptimizer.adam(1e-2).weightDecay(0.01)
                        : RowSparseOptimizer.sgd(0.1).momentum(0.9).nesterov(variant == 1);
                try (Scope s = Scope.open(); RowSparseOptimizer cpu = b.build(); RowSparseOptimizer gpu = b.build()) {
                    Tensor pc = Tensor.of(r.doubles(1001 * 33, -1, 1).toArray(), 1001, 33).to(t);
                    Tensor pg = pc.to(GPU);
                    for (int step = 0; step < 3; step++) {
                        long[] rows = r.longs(200, 0, 1001).toArray();
                        Tensor idx = Tensor.of(rows, rows.length);
                        Tensor g = Tensor.of(r.doubles(rows.length * 33L, -1, 1).toArray(), rows.length, 33).to(t);
                        try (RowSparseGradient gc = RowSparseGradient.coalesce(idx, g, 1001);
                             RowSparseGradient gg = RowSparseGradient.coalesce(idx.to(GPU), g.to(GPU), 1001)) {
                            cpu.step(pc, gc);
                            gpu.step(pg, gg);
                        }
                        assertClose(pc.toDoubleArray(), pg.cpu().toDoubleArray(), t, t + " variant " + variant);
                    }
                }
            }
        }
    }

    @Test
    void sparseEmbeddingBagAndDgcMatchTheCpu() {
        long[] indices = {3, 7, 3, 22, 0, 7, 7, 11, 5, 3};
        long[] offsets = {0, 3, 3, 4, 9};
        try (EmbeddingBag cpu = new EmbeddingBag(23, 5, EmbeddingBag.Mode.MEAN, true, ParamOptions.seeded(3));
             EmbeddingBag gpu = new EmbeddingBag(23, 5, EmbeddingBag.Mode.MEAN, true,
                     ParamOptions.seeded(3).withDevice(GPU))) {
            gpu.weight().copyFrom(cpu.weight());
            try (Scope s = Scope.open()) {
                Tensor a = cpu.forward(Tensor.of(indices, indices.length), Tensor.of(offsets, offsets.length));
                Tensor b = gpu.forward(Tensor.of(indices, indices.length).to(GPU), Tensor.of(offsets, offsets.length).to(GPU));
                assertClose(a.toDoubleArray(), b.cpu().toDoubleArray(), DType.FLOAT32, "bag output");
                a.sum().backward();
                b.sum().backward();
            }
            try (RowSparseGradient gc = cpu.sparseGradient(); RowSparseGradient gg = gpu.sparseGradient()) {
                assertClose(gc.values().toDoubleArray(), gg.values().cpu().toDoubleArray(), DType.FLOAT32, "bag gradient");
            }
        }
        Random r = new Random(2);
        try (Scope s = Scope.open()) {
            Tensor pc = Tensor.of(r.doubles(3000, -1, 1).toArray(), 100, 30).requiresGrad(true);
            Tensor pg = pc.detach().to(GPU).requiresGrad(true);
            Tensor g = Tensor.of(r.doubles(3000, -1, 1).toArray(), 100, 30);
            pc.setGrad(g.copy());
            pg.setGrad(g.to(GPU));
            try (DeepGradientCompression dc = DeepGradientCompression.builder().density(0.01).momentum(0.9).build(List.of(pc));
                 DeepGradientCompression dg = DeepGradientCompression.builder().density(0.01).momentum(0.9).build(List.of(pg));
                 CompressedGradients sc = dc.compress(); CompressedGradients sg = dg.compress()) {
                assertEquals(java.util.Arrays.toString(sc.parts().get(0).indices().toLongArray()),
                        java.util.Arrays.toString(sg.parts().get(0).indices().cpu().toLongArray()));
                assertClose(dc.residual(0).toDoubleArray(), dg.residual(0).cpu().toDoubleArray(), DType.FLOAT64, "residual");
            }
        }
    }

    @Test
    void repeatedAndOutOfRangeRowsAreRefusedOnTheGpuAsOnTheCpu() {
        for (long[] rows : new long[][] {{4, 4}, {4, 10}}) {
            int[] status = new int[2];
            int k = 0;
            for (Device d : new Device[] {Device.CPU, GPU}) {
                try (Scope s = Scope.open()) {
                    Tensor p = Tensor.zeros(DType.FLOAT32, d, 10, 4);
                    Tensor idx = Tensor.of(rows, rows.length).to(d);
                    Tensor g = Tensor.ones(DType.FLOAT32, d, rows.length, 4);
                    Launch l = Launch.on(d);
                    status[k++] = l.kernels().rowSparseSgd(DType.FLOAT32.code(), 10, 4, rows.length, idx.dataAddress(),
                            g.dataAddress(), p.dataAddress(), 0, 0.1, 0, 0, 0, l.stream());
                    assertEquals(0.0, p.abs().sum().item(), "nothing written for rows " + java.util.Arrays.toString(rows));
                }
            }
            assertTrue(status[0] != 0, "the CPU refuses rows " + java.util.Arrays.toString(rows));
            assertEquals(status[0], status[1], "GPU status for rows " + java.util.Arrays.toString(rows));
        }
    }
}
