package dev.cortado.nn;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.autograd.Autograd;
import dev.cortado.ops.Convolution.ConvOptions;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import dev.cortado.testing.Reference;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * Channel pruning: the kept filters are those of largest norm (checked against a Java ranking),
 * and the smaller model computes what the original computes with the removed channels'
 * contributions to the next mixing layer zeroed (its input columns for them set to zero), through
 * a BatchNorm2d in evaluation mode, a ReLU and a max pool, into a Conv2d and into Flatten + Linear.
 */
class ChannelPruningTest {
    private static Sequential model(long seed) {
        ParamOptions p = ParamOptions.seeded(seed);
        ConvOptions same = ConvOptions.builder().padding(1).build();
        return new Sequential(
                new Conv2d(2, 6, new long[] {3, 3}, same, true, p), new BatchNorm2d(6), Activation.relu(),
                new Pool.MaxPool2d(2),
                new Conv2d(6, 5, new long[] {3, 3}, same, false, p), new BatchNorm2d(5), Activation.relu(),
                new Flatten(), new Linear(5 * 4 * 4, 3, true, p));
    }

    /** Non-trivial batch-norm statistics and affine parameters (the defaults are 0 / 1). */
    private static void randomizeBatchNorm(BatchNorm2d bn, Random r) {
        long c = bn.features;
        bn.parameter("weight").copyFrom(Tensor.of(Reference.uniform(r, (int) c, 0.5, 1.5), c).to(DType.FLOAT32));
        bn.parameter("bias").copyFrom(Tensor.of(Reference.uniform(r, (int) c, -0.5, 0.5), c).to(DType.FLOAT32));
        bn.buffer("running_mean").copyFrom(Tensor.of(Reference.uniform(r, (int) c, -0.2, 0.2), c).to(DType.FLOAT32));
        bn.buffer("running_var").copyFrom(Tensor.of(Reference.uniform(r, (int) c, 0.5, 2), c).to(DType.FLOAT32));
    }

    /** Zeroes the columns of {@code w} (dim 1) that read removed channels, {@code spatial} features each. */
    private static void zeroInputs(Tensor w, long[] kept, long channels, long spatial) {
        double[] v = w.toDoubleArray();
        long per = w.numel() / w.size(0) / (channels * spatial);  // kernel elements per input feature
        long row = w.numel() / w.size(0);
        for (long o = 0; o < w.size(0); o++) {
            for (long c = 0; c < channels; c++) {
                if (Arrays.binarySearch(kept, c) < 0) {
                    for (long j = 0; j < spatial * per; j++) {
                        v[(int) (o * row + c * spatial * per + j)] = 0;
                    }
                }
            }
        }
        w.copyFrom(Tensor.of(v, w.dims()).to(w.dtype()));
    }

    @Test
    void prunedModelsComputeTheOriginalWithTheRemovedChannelsSilenced() {
        Random r = new Random(61);
        for (ChannelPruning.Norm norm : ChannelPruning.Norm.values()) {
            for (int layer : new int[] {0, 4}) {
                try (Scope s = Scope.open(); var g = Autograd.noGrad()) {
                    Sequential original = model(7);
                    randomizeBatchNorm((BatchNorm2d) original.get(1), r);
                    randomizeBatchNorm((BatchNorm2d) original.get(5), r);
                    original.eval();
                    Conv2d conv = (Conv2d) original.get(layer);
                    long channels = conv.outChannels;
                    long[] kept = ChannelPruning.keptFilters(conv, 0.5, norm);
                    // the ranking, written here
                    double[] w = conv.weight().toDoubleArray();
                    int per = (int) (w.length / channels);
                    Integer[] order = new Integer[(int) channels];
                    double[] score = new double[(int) channels];
                    for (int o = 0; o < channels; o++) {
                        order[o] = o;
                        for (int i = 0; i < per; i++) {
                            score[o] += norm == ChannelPruning.Norm.L1 ? Math.abs(w[o * per + i]) : w[o * per + i] * w[o * per + i];
                        }
                    }
                    Arrays.sort(order, (a, b) -> Double.compare(score[b], score[a]));
                    long[] want = Arrays.stream(order).limit(channels - Math.round(0.5 * channels)).mapToLong(i -> i).sorted()
                            .toArray();
                    assertArrayEquals(want, kept, norm + " layer " + layer);

                    Sequential reference = model(7);
                    reference.loadState(original.state(), true);
                    reference.eval();
                    if (layer == 0) {
                        zeroInputs(((Conv2d) reference.get(4)).weight(), kept, channels, 1);
                    } else {
                        zeroInputs(((Linear) reference.get(8)).weight(), kept, channels, 16);
                    }
                    Tensor x = Tensor.of(Reference.uniform(r, 3 * 2 * 8 * 8, -1, 1), 3, 2, 8, 8).to(DType.FLOAT32);
                    Tensor expected = reference.forward(x);
                    Sequential pruned = ChannelPruning.prune(original, layer, 0.5, norm);
                    assertEquals(kept.length, ((Conv2d) pruned.get(layer)).outChannels);
                    assertTrue(pruned.numParameters() < reference.numParameters(), pruned.toString());
                    double[] e = expected.toDoubleArray();
                    Reference.assertCloseChecked(e, pruned.forward(x).toDoubleArray(),
                            Reference.relativeTo(new Reference.Tol(1e-5, 1e-5), e), norm + " layer " + layer);
                    pruned.close();
                    reference.close();
                    original.close();
                }
            }
        }
    }

    @Test
    void layersThatCannotBeFollowedAreRejected() {
        try (Scope s = Scope.open(); var g = Autograd.noGrad()) {
            try (Sequential m = new Sequential(new Conv2d(2, 4, 1), new Flatten());
                 Sequential end = new Sequential(new Conv2d(2, 4, 1), Activation.relu())) {
                IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                        () -> ChannelPruning.prune(m, 0, 0.5, ChannelPruning.Norm.L1));
                assertTrue(e.getMessage().contains("ChannelPruning: cannot follow the 4 channels of layer 0 through layer 1"),
                        e.getMessage());
                e = assertThrows(IllegalArgumentException.class, () -> ChannelPruning.prune(m, 1, 0.5, ChannelPruning.Norm.L1));
                assertTrue(e.getMessage().contains("is not an NCHW Conv2d"), e.getMessage());
                e = assertThrows(IllegalArgumentException.class,
                        () -> ChannelPruning.prune(end, 0, 0.5, ChannelPruning.Norm.L2));
                assertTrue(e.getMessage().contains("ChannelPruning: no Conv2d or Flatten + Linear"), e.getMessage());
                assertThrows(IllegalArgumentException.class, () -> ChannelPruning.prune(m, 0, 1.0, ChannelPruning.Norm.L1));
            }
        }
    }
}
