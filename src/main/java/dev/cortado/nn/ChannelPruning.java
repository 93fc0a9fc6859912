package dev.cortado.nn;

import dev.cortado.autograd.Autograd;
import dev.cortado.ops.DataLayout;
import dev.cortado.ops.Indexing;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.stream.IntStream;

/**
 * Structured channel pruning of a {@link Sequential}: the filters of one {@link Conv2d} with the
 * smallest L1 or L2 norm are removed, and the layers that read those channels shrink with it: a
 * {@link BatchNorm2d} right after it loses the same channels (affine parameters and running
 * statistics), channel-wise layers in between ({@link Activation}, max / average pooling,
 * {@link Dropout}) pass them through, and the next layer that mixes channels loses the matching
 * inputs: a {@code Conv2d} its input channels, or a {@link Linear} after a {@link Flatten} the
 * features of those channels (channel-major: features {@code c·S .. c·S + S − 1}, S the spatial
 * size). The result is a smaller dense model whose kept channels carry exactly the values they
 * had: it computes what the original model computes with the removed channels' contributions to
 * the next mixing layer set to zero (filters pruned by their norm: Li et al., "Pruning filters
 * for efficient ConvNets", 2017).
 */
public final class ChannelPruning {
    /** The filter norm that ranks the filters. */
    public enum Norm {
        L1, L2
    }

    private ChannelPruning() {
    }

    /**
     * The kept filters of {@code conv} (ascending): the {@code out − round(fraction·out)} (at
     * least one) of largest norm, ties to the lower index.
     */
    public static long[] keptFilters(Conv2d conv, double fraction, Norm norm) {
        if (!(fraction >= 0 && fraction < 1)) {
            throw new IllegalArgumentException("ChannelPruning: fraction " + fraction + " is not in [0, 1)");
        }
        Tensor w = conv.weight();
        int out = (int) w.size(0);
        int per = (int) (w.numel() / out);
        double[] v = w.toDoubleArray();
        double[] score = new double[out];
        for (int o = 0; o < out; o++) {
            double s = 0;
            for (int i = 0; i < per; i++) {
                double x = v[o * per + i];
                s += norm == Norm.L1 ? Math.abs(x) : x * x;
            }
            score[o] = s;
        }
        int keep = (int) Math.max(1, out - Math.round(fraction * out));
        return IntStream.range(0, out).boxed()
                .sorted(Comparator.comparingDouble((Integer o) -> -score[o]).thenComparing(o -> o))
                .limit(keep).mapToLong(Integer::longValue).sorted().toArray();
    }

    /**
     * The pruned model: filter {@code fraction} of the {@code Conv2d} at {@code convIndex} removed
     * by {@code norm}, the following layers shrunk (see the class comment). It takes over
     * {@code model}'s layers as {@link Sparsify#convert} does: the replaced layers are closed, the
     * others belong to the result.
     */
    public static Sequential prune(Sequential model, int convIndex, double fraction, Norm norm) {
        if (!(model.get(convIndex) instanceof Conv2d conv) || conv.options().groups() != 1
                || conv.options().layout() != DataLayout.NCHW) {
            throw new IllegalArgumentException("ChannelPruning: layer " + convIndex + " (" + model.get(convIndex)
                    + ") is not an NCHW Conv2d with groups 1");
        }
        long[] kept = keptFilters(conv, fraction, norm);
        long channels = conv.outChannels;
        List<Module> layers = new ArrayList<>();
        List<Module> replaced = new ArrayList<>();
        List<Module> created = new ArrayList<>();
        try (var g = Autograd.noGrad(); Tensor idx = Tensor.of(kept, conv.weight().device(), kept.length)) {
            for (int i = 0; i < convIndex; i++) {
                layers.add(model.get(i));
            }
            created.add(shrunkConv(conv, idx, kept.length, -1));
            replaced.add(conv);
            layers.add(created.get(created.size() - 1));
            int i = convIndex + 1;
            boolean done = false;
            for (; i < model.size() && !done; i++) {
                Module m = model.get(i);
                if (m instanceof BatchNorm2d bn && bn.features == channels) {
                    created.add(shrunkBatchNorm(bn, idx, kept.length));
                } else if (m instanceof Activation || m instanceof Pool.MaxPool2d || m instanceof Pool.AvgPool2d
                        || m instanceof Dropout) {
                    layers.add(m);
                    continue;
                } else if (m instanceof Conv2d next && next.options().groups() == 1 && next.inChannels == channels) {
                    created.add(shrunkConv(next, idx, -1, kept.length));
                    done = true;
                } else if (m instanceof Flatten && i + 1 < model.size() && model.get(i + 1) instanceof Linear fc
                        && fc.inFeatures() % channels == 0) {
                    layers.add(m);
                    created.add(shrunkLinear(fc, kept, fc.inFeatures() / channels));
                    i++;
                    m = fc;
                    done = true;
                } else {
                    throw new IllegalArgumentException("ChannelPruning: cannot follow the " + channels
                            + " channels of layer " + convIndex + " through layer " + i + " (" + m + ")");
                }
                replaced.add(m);
                layers.add(created.get(created.size() - 1));
            }
            if (!done) {
                throw new IllegalArgumentException("ChannelPruning: no Conv2d or Flatten + Linear reads the channels of layer "
                        + convIndex);
            }
            for (; i < model.size(); i++) {
                layers.add(model.get(i));
            }
        } catch (RuntimeException e) {
            created.forEach(Module::close);
            throw e;
        }
        replaced.forEach(Module::close);
        return new Sequential(layers);
    }

    /** conv with its output channels (outKeep >= 0) or its input channels (inKeep >= 0) selected by idx. */
    private static Conv2d shrunkConv(Conv2d c, Tensor idx, int outKeep, int inKeep) {
        long out = outKeep >= 0 ? outKeep : c.outChannels;
        long in = inKeep >= 0 ? inKeep : c.inChannels;
        Tensor w = c.weight();
        Conv2d s = new Conv2d(in, out, c.kernel.clone(), c.options(), c.bias() != null,
                ParamOptions.defaults().withDType(w.dtype()).withDevice(w.device()));
        try (Tensor sel = Indexing.gather(w, idx, outKeep >= 0 ? 0 : 1)) {
            s.weight().copyFrom(sel);
        }
        if (c.bias() != null) {
            if (outKeep >= 0) {
                try (Tensor sel = Indexing.gather(c.bias(), idx, 0)) {
                    s.bias().copyFrom(sel);
                }
            } else {
                s.bias().copyFrom(c.bias());
            }
        }
        return s;
    }

    private static BatchNorm2d shrunkBatchNorm(BatchNorm2d bn, Tensor idx, int keep) {
        boolean affine = bn.parameter("weight") != null;
        boolean track = bn.buffer("running_mean") != null;
        BatchNorm2d s = new BatchNorm2d(keep, bn.attrs.eps(), bn.attrs.momentum(), affine, track, bn.attrs.layout(),
                ParamOptions.defaults().withDevice(idx.device()));
        for (String name : List.of("weight", "bias", "running_mean", "running_var")) {
            Tensor from = name.startsWith("running") ? bn.buffer(name) : bn.parameter(name);
            Tensor to = name.startsWith("running") ? s.buffer(name) : s.parameter(name);
            if (from != null) {
                try (Tensor sel = Indexing.gather(from, idx, 0)) {
                    to.copyFrom(sel);
                }
            }
        }
        if (track) {
            s.buffer("num_batches_tracked").copyFrom(bn.buffer("num_batches_tracked"));
        }
        s.train(bn.isTraining());
        return s;
    }

    /** fc with the input features of the kept channels (spatial size per channel {@code spatial}). */
    private static Linear shrunkLinear(Linear fc, long[] kept, long spatial) {
        long[] cols = Arrays.stream(kept).flatMap(c -> IntStream.range(0, (int) spatial).mapToLong(j -> c * spatial + j))
                .toArray();
        Tensor w = fc.weight();
        Linear s = new Linear(cols.length, fc.outFeatures(), fc.bias() != null,
                ParamOptions.defaults().withDType(w.dtype()).withDevice(w.device()));
        try (Tensor idx = Tensor.of(cols, w.device(), cols.length); Tensor sel = Indexing.gather(w, idx, 1)) {
            s.weight().copyFrom(sel);
        }
        if (fc.bias() != null) {
            s.bias().copyFrom(fc.bias());
        }
        return s;
    }
}
