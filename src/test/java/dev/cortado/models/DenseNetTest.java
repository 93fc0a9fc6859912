package dev.cortado.models;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.Cortado;
import dev.cortado.nn.Losses;
import dev.cortado.nn.ParamOptions;
import dev.cortado.ops.Indexing;
import dev.cortado.optim.Sgd;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * DenseNet: torchvision's parameter counts, the shared-buffer dense block against the naive
 * concatenating one in float64 (outputs, input and parameter gradients, running statistics), the
 * memory it keeps for backward, and a small network that learns.
 */
class DenseNetTest {

    @ParameterizedTest(name = "{0}: {1} parameters")
    @CsvSource({"D121, 7978856", "D169, 14149480", "D201, 20013928", "D161, 28681000"})
    void parameterCountsAreThePublishedOnes(DenseNet.Depth depth, long expected) {
        try (DenseNet net = DenseNet.builder(depth).build()) {
            assertEquals(expected, net.numParameters());
        }
    }

    /** The naive block: every layer reads a fresh concatenation of all earlier maps. */
    static Tensor naive(DenseNet.DenseBlock block, Tensor x) {
        List<Tensor> maps = new ArrayList<>();
        maps.add(x);
        for (int i = 0; i < block.size(); i++) {
            try (Tensor cat = Indexing.concat(1, maps.toArray(new Tensor[0]))) {
                maps.add(block.layer(i).apply(cat));
            }
        }
        Tensor out = Indexing.concat(1, maps.toArray(new Tensor[0]));
        for (int i = 1; i < maps.size(); i++) {
            maps.get(i).close();
        }
        return out;
    }

    /**
     * In float64 and training mode (batch statistics), the shared-buffer block and the naive one
     * give the same output, the same input gradient and the same parameter gradients (to 1e-12),
     * and the recomputation in backward leaves the running statistics as one forward does.
     */
    @Test
    void sharedBufferBlockMatchesNaiveConcatenation() {
        try (Scope s = Scope.open();
             DenseNet.DenseBlock shared = new DenseNet.DenseBlock(3, 4, 5, 2, ParamOptions.seeded(7));
             DenseNet.DenseBlock plain = new DenseNet.DenseBlock(3, 4, 5, 2, ParamOptions.seeded(7))) {
            shared.to(DType.FLOAT64);
            plain.to(DType.FLOAT64);
            Tensor x0 = ResNetTest.images(3, 3, 7, 1).to(DType.FLOAT64);
            Tensor w = ResNetTest.images(3, 23, 7, 2).to(DType.FLOAT64);
            Tensor xa = x0.detach().requiresGrad(true);
            Tensor xb = x0.detach().requiresGrad(true);
            Tensor ya = shared.apply(xa);
            Tensor yb = naive(plain, xb);
            assertArrayEquals(new long[] {3, 23, 7, 7}, ya.shape().toArray());
            assertArrayEquals(yb.toDoubleArray(), ya.toDoubleArray(), 1e-12);
            ya.mul(w).sum().backward();
            yb.mul(w).sum().backward();
            assertArrayEquals(xb.grad().toDoubleArray(), xa.grad().toDoubleArray(), 1e-12, "input gradient");
            Map<String, Tensor> pb = plain.namedParameters();
            for (Map.Entry<String, Tensor> e : shared.namedParameters().entrySet()) {
                assertNotNull(e.getValue().grad(), e.getKey());
                assertArrayEquals(pb.get(e.getKey()).grad().toDoubleArray(), e.getValue().grad().toDoubleArray(), 1e-12,
                        e.getKey());
            }
            Map<String, Tensor> bb = plain.namedBuffers();
            for (Map.Entry<String, Tensor> e : shared.namedBuffers().entrySet()) {
                assertArrayEquals(bb.get(e.getKey()).toDoubleArray(), e.getValue().toDoubleArray(), 1e-12,
                        e.getKey() + ": updated once, as by one forward");
            }
        }
    }

    /**
     * Between forward and backward, the shared-buffer block of 12 layers keeps its buffer (425,984
     * bytes here) and less than a tenth of what the naive one keeps (13,213,568) (its concatenations and every layer's intermediates): the bytes the
     * host allocator holds after the forward, minus before, with the output alive in both.
     */
    @Test
    void sharedBufferBlockKeepsLessForBackward() {
        long[] kept = new long[2];
        for (int variant = 0; variant < 2; variant++) {
            try (Scope s = Scope.open();
                 DenseNet.DenseBlock block = new DenseNet.DenseBlock(8, 12, 8, 4, ParamOptions.seeded(3))) {
                Tensor x = ResNetTest.images(4, 8, 16, 1);
                long before = Cortado.memoryStats(Device.CPU).allocatedBytes();
                Tensor y = variant == 0 ? block.apply(x) : naive(block, x);
                kept[variant] = Cortado.memoryStats(Device.CPU).allocatedBytes() - before;
                y.sum().backward();
            }
        }
        long buffer = 4L * (8 + 12 * 8) * 16 * 16 * 4;
        assertTrue(kept[0] < 2 * buffer, "shared keeps " + kept[0] + " bytes, its buffer is " + buffer);
        assertTrue(kept[0] * 10 < kept[1], "shared keeps " + kept[0] + " bytes, naive " + kept[1]);
    }

    @Test
    void forwardShapesAndGradientsReachEveryParameter() {
        try (Scope s = Scope.open();
             DenseNet net = DenseNet.builder(DenseNet.Depth.D121).growth(4).stemWidth(8).blocks(2, 3, 2).classes(5)
                     .params(ParamOptions.seeded(2)).build()) {
            Tensor y = net.apply(ResNetTest.images(2, 3, 37, 1));
            assertArrayEquals(new long[] {2, 5}, y.shape().toArray(), "odd input size");
            y.sum().backward();
            for (Map.Entry<String, Tensor> e : net.namedParameters().entrySet()) {
                assertNotNull(e.getValue().grad(), e.getKey() + " got no gradient");
                double norm = e.getValue().grad().abs().sum().item();
                assertTrue(norm > 0 && Double.isFinite(norm), e.getKey() + " gradient norm " + norm);
            }
            net.eval();
            try (var off = dev.cortado.autograd.Autograd.noGrad()) {
                assertArrayEquals(new long[] {2, 5}, net.apply(ResNetTest.images(2, 3, 32, 3)).shape().toArray());
            }
        }
    }

    /**
     * A small DenseNet learns to tell a bright top half from a bright bottom half (chance: ln 2 =
     * 0.69 nats) within 30 SGD steps: the loss falls below 40% of its start.
     */
    @Test
    void aSmallDenseNetLearns() {
        try (DenseNet net = DenseNet.builder(DenseNet.Depth.D121).growth(6).stemWidth(8).blocks(3, 3).classes(2)
                .inChannels(1).smallImages(true).params(ParamOptions.seeded(11)).build()) {
            Sgd opt = Sgd.builder().lr(0.05).momentum(0.9).build(net.parameters());
            SplittableRandom r = new SplittableRandom(4);
            double first = 0;
            double last = 0;
            for (int step = 0; step < 30; step++) {
                float[] x = new float[16 * 12 * 12];
                long[] y = new long[16];
                for (int n = 0; n < 16; n++) {
                    y[n] = r.nextInt(2);
                    for (int i = 0; i < 144; i++) {
                        boolean top = i < 72;
                        x[n * 144 + i] = (float) (r.nextGaussian() * 0.5 + ((top == (y[n] == 0)) ? 1 : 0));
                    }
                }
                try (Scope s = Scope.open()) {
                    Tensor loss = Losses.crossEntropy(net.apply(Tensor.of(x, 16, 1, 12, 12)), Tensor.of(y, 16));
                    opt.zeroGrad();
                    loss.backward();
                    opt.step();
                    if (step == 0) {
                        first = loss.item();
                    }
                    last = loss.item();
                }
            }
            opt.close();
            assertTrue(last < 0.4 * first, "loss " + first + " -> " + last);
        }
    }
}
