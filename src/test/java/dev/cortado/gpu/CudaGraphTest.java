package dev.cortado.gpu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.backend.cuda.CudaBackend;
import dev.cortado.graph.CompileOptions;
import dev.cortado.graph.CompiledFunction;
import dev.cortado.graph.Graphs;
import dev.cortado.nn.Activation;
import dev.cortado.nn.BatchNorm2d;
import dev.cortado.nn.Conv2d;
import dev.cortado.nn.Flatten;
import dev.cortado.nn.Linear;
import dev.cortado.nn.ParamOptions;
import dev.cortado.nn.Pool;
import dev.cortado.nn.Sequential;
import dev.cortado.nn.TransformerBlock;
import dev.cortado.ops.Convolution;
import dev.cortado.ops.Generator;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * Compiled graphs on CUDA ({@code dev.cortado.graph}: the arena is one device allocation, the
 * kernels are the CUDA ones) against eager on the same device: the MNIST-style CNN (default and
 * with frozen parameters, so batch norm folded into the conv and ReLU fused into it) and a
 * transformer block with a dynamic batch. 1e-4 relative + 1e-5 absolute (folding rounds once).
 */
@Tag("gpu")
class CudaGraphTest {
    private static final Device GPU = Device.cuda(0);

    @BeforeAll
    static void requireGpu() {
        Assumptions.assumeTrue(GPU.isAvailable(), () -> "no usable CUDA device: "
                + CudaBackend.instance().unavailableReason());
    }

    private static void close(Tensor want, Tensor got, String what) {
        double[] w = want.toDoubleArray();
        double[] g = got.toDoubleArray();
        assertEquals(w.length, g.length, what);
        for (int i = 0; i < w.length; i++) {
            assertTrue(Math.abs(w[i] - g[i]) <= 1e-5 + 1e-4 * Math.abs(w[i]), what + " element " + i + ": " + g[i] + " vs " + w[i]);
        }
    }

    @Test
    void compiledCnnMatchesEagerOnTheGpu() {
        ParamOptions p = ParamOptions.seeded(5);
        Convolution.ConvOptions same = Convolution.ConvOptions.builder().padding(1).build();
        try (Scope s = Scope.open();
             Sequential cnn = new Sequential(
                     new Conv2d(1, 8, new long[] {3, 3}, same, false, p), new BatchNorm2d(8), Activation.relu(),
                     new Pool.MaxPool2d(2), new Flatten(), new Linear(8 * 14 * 14, 10, true, p))) {
            cnn.to(GPU);
            cnn.eval();
            Tensor x = Generator.seeded(2).uniform(0, 1, DType.FLOAT32, Device.CPU, 16, 1, 28, 28).to(GPU);
            for (CompileOptions o : new CompileOptions[] {CompileOptions.defaults(),
                CompileOptions.builder().freezeParameters(true).verify(true).build()}) {
                try (CompiledFunction f = Graphs.compile(cnn, x, o); Tensor want = cnn.forward(x); Tensor got = f.apply(x)) {
                    assertEquals(GPU, got.device());
                    close(want, got, "CNN on the GPU, frozen " + o.freezeParameters());
                }
            }
        }
    }

    @Test
    void compiledTransformerBlockWithDynamicBatchOnTheGpu() {
        try (Scope s = Scope.open(); TransformerBlock blk = TransformerBlock.builder(16, 4).params(ParamOptions.seeded(9)).build()) {
            blk.to(GPU);
            blk.eval();
            Tensor x = Generator.seeded(3).normal(0, 1, DType.FLOAT32, Device.CPU, 2, 5, 16).to(GPU);
            Tensor x2 = Generator.seeded(4).normal(0, 1, DType.FLOAT32, Device.CPU, 6, 5, 16).to(GPU);
            CompileOptions o = CompileOptions.builder().dynamicDim(0, 0, "B").verify(true).build();
            try (CompiledFunction f = Graphs.compile(blk, x, o); Tensor w1 = blk.forward(x); Tensor g1 = f.apply(x);
                 Tensor w2 = blk.forward(x2); Tensor g2 = f.apply(x2)) {
                close(w1, g1, "block, batch 2");
                close(w2, g2, "block, batch 6 from the symbolic graph");
            }
        }
    }
}
