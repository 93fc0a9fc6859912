package dev.cortado.gpu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.backend.cuda.CudaBackend;
import dev.cortado.nn.Activation;
import dev.cortado.nn.Embedding;
import dev.cortado.nn.LayerNorm;
import dev.cortado.nn.Linear;
import dev.cortado.nn.Losses;
import dev.cortado.nn.Module;
import dev.cortado.nn.ParamOptions;
import dev.cortado.nn.RMSNorm;
import dev.cortado.nn.Sequential;
import dev.cortado.ops.Generator;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.Map;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * nn modules on CUDA against the same modules on the CPU (layers whose ops have CUDA kernels:
 * linear, norms, embedding, activations, cross entropy): {@code Module.to(Device)} moves every
 * parameter, the forward and the gradients agree to 1e-4 relative + 1e-5 absolute (float32,
 * cuBLAS and the CPU's OpenBLAS sum in different orders).
 */
@Tag("gpu")
class CudaNnTest {
    private static final Device GPU = Device.cuda(0);

    @BeforeAll
    static void requireGpu() {
        Assumptions.assumeTrue(GPU.isAvailable(), () -> "no usable CUDA device: "
                + CudaBackend.instance().unavailableReason());
    }

    static void close(double[] want, double[] got, String what) {
        assertEquals(want.length, got.length, what);
        for (int i = 0; i < want.length; i++) {
            double tol = 1e-5 + 1e-4 * Math.abs(want[i]);
            assertTrue(Math.abs(want[i] - got[i]) <= tol, what + " element " + i + ": " + got[i] + " vs " + want[i]);
        }
    }

    static Sequential model(long seed) {
        ParamOptions p = ParamOptions.seeded(seed).withDevice(Device.CPU);
        return new Sequential(new LayerNorm(new long[] {12}, 1e-5, true, true, p), new Linear(12, 33, true, p),
                Activation.gelu(), new RMSNorm(new long[] {33}, 1e-6, true, p), new Linear(33, 7, true, p));
    }

    @Test
    void forwardAndGradientsMatchTheCpu() {
        try (Scope s = Scope.open(); Sequential cpu = model(5); Sequential gpu = model(5)) {
            gpu.to(GPU);
            for (Tensor t : gpu.state().values()) {
                assertEquals(GPU, t.device());
                assertTrue(t.isLeaf());
            }
            Tensor x = Generator.seeded(1).uniform(-2, 2, DType.FLOAT32, Device.CPU, 5, 3, 12);
            Tensor target = Tensor.of(new long[] {0, 6, 3, 2, 1, 5, 4, 0, 6, 3, 2, 1, 5, 4, 0}, 5, 3);
            Tensor lc = Losses.crossEntropy(cpu.forward(x).permute(0, 2, 1), target);
            Tensor lg = Losses.crossEntropy(gpu.forward(x.to(GPU)).permute(0, 2, 1), target.to(GPU));
            close(lc.toDoubleArray(), lg.toDoubleArray(), "loss");
            lc.backward();
            lg.backward();
            Map<String, Tensor> pc = cpu.namedParameters();
            for (Map.Entry<String, Tensor> e : gpu.namedParameters().entrySet()) {
                assertNotNull(e.getValue().grad(), e.getKey());
                close(pc.get(e.getKey()).grad().toDoubleArray(), e.getValue().grad().toDoubleArray(), "grad " + e.getKey());
            }
        }
    }

    @Test
    void embeddingAndStateRoundTripAcrossDevices() {
        try (Scope s = Scope.open(); Embedding cpu = new Embedding(17, 5, ParamOptions.seeded(2).withDevice(Device.CPU));
             Module gpu = new Embedding(17, 5, ParamOptions.seeded(9).withDevice(GPU))) {
            gpu.loadState(cpu.state(), true);
            Tensor idx = Tensor.of(new long[] {16, 0, 3, 3}, 4);
            close(cpu.forward(idx).toDoubleArray(), gpu.forward(idx.to(GPU)).toDoubleArray(), "embedding");
            gpu.to(Device.CPU);
            close(cpu.state().get("weight").toDoubleArray(), gpu.state().get("weight").toDoubleArray(), "moved back");
        }
    }
}
