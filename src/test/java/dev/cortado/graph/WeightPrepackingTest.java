package dev.cortado.graph;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.models.ResNet;
import dev.cortado.nn.Module;
import dev.cortado.nn.ParamOptions;
import dev.cortado.ops.Convolution;
import dev.cortado.ops.Generator;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import dev.cortado.testing.Reference;
import org.junit.jupiter.api.Test;

/**
 * {@link WeightPrepacking} on a ResNet-18 (width 32: its 3x3 convolutions have 32 to 256
 * channels, so both packed algorithms occur) compiled for inference with frozen parameters: every
 * convolution whose kernel has a packed layout reads a weight packed at compile time, the results
 * are those of the same graph without packing (bit for bit: the same kernels on the same numbers)
 * and of eager (float32: 1e-4 relative + 1e-5 absolute, the folded batch norms round differently),
 * at the compiled batch and another; without frozen parameters nothing is packed.
 */
class WeightPrepackingTest {

    private static int count(Graph g, String op) {
        int n = 0;
        for (Node node : g.nodes()) {
            if (node instanceof Node.OpCall c && c.op().name().equals(op)) {
                n++;
            }
        }
        return n;
    }

    @Test
    void aFrozenResNetRunsOnPackedWeightsWithTheSameResults() {
        Generator gen = Generator.seeded(7);
        try (Scope s = Scope.open(); Module net = ResNet.builder(ResNet.Depth.R18).smallImages(true).width(32).inChannels(3)
                .classes(10).params(ParamOptions.seeded(3)).build()) {
            net.eval();
            PassesOnModelsTest.randomizeRunningStatistics(net);
            Tensor x = gen.normal(0, 1, DType.FLOAT32, Device.CPU, 2, 3, 16, 16);
            CompileOptions packed = CompileOptions.builder().freezeParameters(true).verify(true)
                    .dynamicDim(0, 0, "B").build();
            CompileOptions unpacked = CompileOptions.builder().from(packed).prepackWeights(false).build();
            try (CompiledFunction f = Graphs.compile(net, x, packed); CompiledFunction u = Graphs.compile(net, x, unpacked)) {
                int convs = count(u.graph(), "conv");
                int prepacked = count(f.graph(), "conv_prepacked");
                assertEquals(0, count(u.graph(), "conv_prepacked"), "prepackWeights(false)");
                // the stem (3 input channels: direct in NHWC) and the 3x3 convolutions pack; the 1x1
                // downsampling convolutions run im2col and keep their weights
                assertTrue(prepacked >= 16, "packed " + prepacked + " of " + convs + ":\n" + f.graph());
                assertEquals(convs, prepacked + count(f.graph(), "conv"), f.graph().toString());
                for (long batch : new long[] {2, 3}) {
                    try (Tensor xb = batch == 2 ? x.copy() : gen.normal(0, 1, DType.FLOAT32, Device.CPU, batch, 3, 16, 16);
                         Tensor want = net.forward(xb); Tensor got = f.apply(xb); Tensor plain = u.apply(xb)) {
                        assertArrayEquals(plain.toDoubleArray(), got.toDoubleArray(), "batch " + batch
                                + ": packed and unpacked graphs");
                        Reference.assertCloseChecked(want.toDoubleArray(), got.toDoubleArray(), new Reference.Tol(1e-4, 1e-5),
                                "batch " + batch + ": packed graph against eager");
                    }
                }
            }
            try (CompiledFunction live = Graphs.compile(net, x, CompileOptions.builder().verify(true).build())) {
                assertEquals(0, count(live.graph(), "conv_prepacked"), "parameters not frozen: nothing packed");
            }
            assertTrue(Convolution.CONV_PREPACKED_OP.name().equals("conv_prepacked"));
        }
    }
}
