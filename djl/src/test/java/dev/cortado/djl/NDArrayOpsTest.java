package dev.cortado.djl;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDArrays;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.nn.Activation;
import ai.djl.nn.convolutional.Conv2d;
import ai.djl.nn.core.Linear;
import ai.djl.nn.norm.BatchNorm;
import ai.djl.nn.norm.Dropout;
import ai.djl.nn.norm.LayerNorm;
import ai.djl.nn.pooling.Pool;
import ai.djl.training.GradientCollector;
import ai.djl.training.loss.Loss;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.function.Function;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * Each implemented NDArray / NDArrayEx / NDManager operation of the Cortado engine on fresh random
 * inputs (odd sizes, broadcasting, size-1 dimensions), compared with DJL's PyTorch engine running
 * the same DJL call on the same numbers: values, shape and data type; for the differentiable ones
 * also the gradients that a {@link GradientCollector} gives for a random weighting of the output.
 * Where PyTorch cannot load, those comparisons are skipped; {@link #documentedSemantics()} checks
 * DJL's documented results by hand-computed values on Cortado alone.
 *
 * <p>Tolerances: float32 results within 1e-5 absolute + 1e-5 relative (products, convolution,
 * norms: 1e-4 + 1e-4, as their summation order differs from libtorch's); integer and boolean
 * results exactly.
 */
@ExtendWith(NoLeaks.class)
class NDArrayOpsTest {
    /** An operation of the DJL API on its inputs; {@code grad} when it is differentiable in input 0. */
    record Case(String name, long[][] shapes, Domain domain, boolean grad, double tol, Function<NDList, NDArray> op) {
        @Override
        public String toString() {
            return name;
        }
    }

    enum Domain { ANY, POSITIVE, LABELS10 }

    private static Case c(String name, Domain d, boolean grad, Function<NDList, NDArray> op, long[]... shapes) {
        return new Case(name, shapes, d, grad, 1e-5, op);
    }

    private static Case loose(String name, boolean grad, Function<NDList, NDArray> op, long[]... shapes) {
        return new Case(name, shapes, Domain.ANY, grad, 1e-4, op);
    }

    private static long[] s(long... d) {
        return d;
    }

    static Stream<Case> cases() {
        List<Case> l = new ArrayList<>();
        Domain any = Domain.ANY;
        Domain pos = Domain.POSITIVE;
        // arithmetic (with broadcasting) and scalar forms
        l.add(c("add", any, true, in -> in.get(0).add(in.get(1)), s(3, 5), s(5)));
        l.add(c("sub", any, true, in -> in.get(0).sub(in.get(1)), s(3, 1, 4), s(2, 4)));
        l.add(c("mul", any, true, in -> in.get(0).mul(in.get(1)), s(7), s(7)));
        l.add(c("div", pos, true, in -> in.get(0).div(in.get(1)), s(3, 5), s(3, 1)));
        l.add(c("addScalar", any, true, in -> in.get(0).add(2.5f), s(4, 3)));
        l.add(c("subScalar", any, true, in -> in.get(0).sub(0.5f), s(4, 3)));
        l.add(c("mulScalar", any, true, in -> in.get(0).mul(-3f), s(4, 3)));
        l.add(c("divScalar", any, true, in -> in.get(0).div(4f), s(4, 3)));
        l.add(c("powScalar", pos, true, in -> in.get(0).pow(1.7f), s(9)));
        l.add(c("pow", pos, true, in -> in.get(0).pow(in.get(1)), s(3, 4), s(3, 4)));
        l.add(c("maximum", any, true, in -> in.get(0).maximum(in.get(1)), s(6, 2), s(6, 2)));
        l.add(c("minimum", any, true, in -> in.get(0).minimum(in.get(1)), s(6, 2), s(2)));
        l.add(c("maximumScalar", any, true, in -> in.get(0).maximum(0.25f), s(11)));
        l.add(c("minimumScalar", any, true, in -> in.get(0).minimum(0.25f), s(11)));
        l.add(c("addi", any, false, in -> in.get(0).duplicate().addi(in.get(1)), s(2, 3), s(3)));
        l.add(c("subi", any, false, in -> in.get(0).duplicate().subi(1.5f), s(2, 3)));
        l.add(c("muli", any, false, in -> in.get(0).duplicate().muli(in.get(1)), s(2, 3), s(2, 3)));
        l.add(c("divi", any, false, in -> in.get(0).duplicate().divi(2f), s(2, 3)));
        l.add(c("powi", pos, false, in -> in.get(0).duplicate().powi(2f), s(2, 3)));
        l.add(c("negi", any, false, in -> in.get(0).duplicate().negi(), s(2, 3)));
        // unary
        l.add(c("neg", any, true, in -> in.get(0).neg(), s(5, 3)));
        l.add(c("abs", any, true, in -> in.get(0).abs(), s(5, 3)));
        l.add(c("square", any, true, in -> in.get(0).square(), s(5, 3)));
        l.add(c("sqrt", pos, true, in -> in.get(0).sqrt(), s(5, 3)));
        l.add(c("exp", any, true, in -> in.get(0).exp(), s(5, 3)));
        l.add(c("log", pos, true, in -> in.get(0).log(), s(5, 3)));
        l.add(c("log10", pos, true, in -> in.get(0).log10(), s(5, 3)));
        l.add(c("log2", pos, true, in -> in.get(0).log2(), s(5, 3)));
        l.add(c("sin", any, true, in -> in.get(0).sin(), s(5, 3)));
        l.add(c("cos", any, true, in -> in.get(0).cos(), s(5, 3)));
        l.add(c("tan", any, true, in -> in.get(0).tan(), s(5, 3)));
        l.add(c("tanh", any, true, in -> in.get(0).tanh(), s(5, 3)));
        l.add(c("toDegrees", any, true, in -> in.get(0).toDegrees(), s(5)));
        l.add(c("toRadians", any, true, in -> in.get(0).toRadians(), s(5)));
        l.add(c("clip", any, true, in -> in.get(0).clip(-0.5, 0.75), s(4, 4)));
        // comparisons and logic
        l.add(c("eq", any, false, in -> in.get(0).eq(in.get(0).mul(in.get(1).gt(0))), s(3, 4), s(3, 4)));
        l.add(c("eqScalar", any, false, in -> in.get(0).gt(0).eq(1), s(9)));
        l.add(c("neq", any, false, in -> in.get(0).neq(in.get(0).mul(in.get(1).gt(0))), s(3, 4), s(3, 4)));
        l.add(c("neqScalar", any, false, in -> in.get(0).gt(0).neq(0), s(9)));
        l.add(c("gt", any, false, in -> in.get(0).gt(in.get(1)), s(3, 4), s(4)));
        l.add(c("gte", any, false, in -> in.get(0).gte(in.get(1)), s(3, 4), s(3, 4)));
        l.add(c("lt", any, false, in -> in.get(0).lt(in.get(1)), s(3, 4), s(1, 4)));
        l.add(c("lte", any, false, in -> in.get(0).lte(0.1f), s(3, 4)));
        l.add(c("gtScalar", any, false, in -> in.get(0).gt(-0.2f), s(3, 4)));
        l.add(c("gteScalar", any, false, in -> in.get(0).gte(0.3f), s(3, 4)));
        l.add(c("ltScalar", any, false, in -> in.get(0).lt(0.3f), s(3, 4)));
        l.add(c("logicalAnd", any, false, in -> in.get(0).gt(0).logicalAnd(in.get(1).gt(0)), s(8), s(8)));
        l.add(c("logicalOr", any, false, in -> in.get(0).gt(0).logicalOr(in.get(1).gt(0)), s(8), s(8)));
        l.add(c("logicalXor", any, false, in -> in.get(0).gt(0).logicalXor(in.get(1).gt(0)), s(8), s(8)));
        l.add(c("logicalNot", any, false, in -> in.get(0).gt(0).logicalNot(), s(8)));
        l.add(c("isNaN", any, false, in -> in.get(0).log().isNaN(), s(8)));
        l.add(c("isInfinite", any, false, in -> in.get(0).div(in.get(0).gt(0).toType(DataType.FLOAT32, false)).isInfinite(), s(8)));
        l.add(c("where", any, true, in -> NDArrays.where(in.get(1).gt(0), in.get(0), in.get(1)), s(3, 4), s(3, 4)));
        // reductions
        l.add(c("sum", any, true, in -> in.get(0).sum(), s(3, 5, 2)));
        l.add(c("sumAxes", any, true, in -> in.get(0).sum(new int[] {0, 2}), s(3, 5, 2)));
        l.add(c("sumKeep", any, true, in -> in.get(0).sum(new int[] {-1}, true), s(3, 5, 2)));
        l.add(c("mean", any, true, in -> in.get(0).mean(), s(3, 5, 2)));
        l.add(c("meanAxes", any, true, in -> in.get(0).mean(new int[] {1}, true), s(3, 5, 2)));
        l.add(c("max", any, true, in -> in.get(0).max(), s(3, 5)));
        l.add(c("maxAxes", any, true, in -> in.get(0).max(new int[] {1}), s(3, 5)));
        l.add(c("min", any, true, in -> in.get(0).min(), s(3, 5)));
        l.add(c("minAxes", any, true, in -> in.get(0).min(new int[] {0}, true), s(3, 5)));
        l.add(c("prod", pos, true, in -> in.get(0).prod(), s(2, 3)));
        l.add(c("prodAxes", pos, true, in -> in.get(0).prod(new int[] {1}), s(2, 3)));
        l.add(c("argMax", any, false, in -> in.get(0).argMax(), s(4, 5)));
        l.add(c("argMaxAxis", any, false, in -> in.get(0).argMax(1), s(4, 5)));
        l.add(c("argMin", any, false, in -> in.get(0).argMin(), s(4, 5)));
        l.add(c("argMinAxis", any, false, in -> in.get(0).argMin(0), s(4, 5)));
        l.add(loose("norm", true, in -> in.get(0).norm(), s(4, 5)));
        l.add(loose("normAxes", true, in -> in.get(0).norm(2, new int[] {1}, true), s(4, 5)));
        l.add(loose("norm1", true, in -> in.get(0).norm(1, new int[] {0}, false), s(4, 5)));
        l.add(c("softmax", any, true, in -> in.get(0).softmax(-1), s(3, 7)));
        l.add(c("softmaxAxis0", any, true, in -> in.get(0).softmax(0), s(3, 7)));
        l.add(c("logSoftmax", any, true, in -> in.get(0).logSoftmax(1), s(3, 7)));
        // shapes, views, indexing
        l.add(c("reshape", any, true, in -> in.get(0).reshape(new Shape(5, -1)), s(3, 5, 2)));
        l.add(c("flatten", any, true, in -> in.get(0).transpose().flatten(), s(3, 5)));
        l.add(c("flattenRange", any, true, in -> in.get(0).flatten(1, 2), s(2, 3, 4, 2)));
        l.add(c("expandDims", any, true, in -> in.get(0).expandDims(-1), s(3, 2)));
        l.add(c("squeeze", any, true, in -> in.get(0).squeeze(), s(3, 1, 2, 1)));
        l.add(c("squeezeAxis", any, true, in -> in.get(0).squeeze(new int[] {1}), s(3, 1, 2, 1)));
        l.add(c("transpose", any, true, in -> in.get(0).transpose(), s(2, 3, 4)));
        l.add(c("transposeAxes", any, true, in -> in.get(0).transpose(1, 2, 0), s(2, 3, 4)));
        l.add(c("swapAxes", any, true, in -> in.get(0).swapAxes(0, 1), s(2, 3)));
        l.add(c("broadcast", any, true, in -> in.get(0).broadcast(new Shape(4, 3, 5)), s(3, 1)));
        l.add(c("tile", any, true, in -> in.get(0).tile(new long[] {2, 3}), s(2, 3)));
        l.add(c("tileRows", any, true, in -> in.get(0).tile(new long[] {3, 1}), s(2, 3)));
        l.add(c("repeatAxis", any, true, in -> in.get(0).repeat(1, 2), s(2, 3)));
        l.add(c("getSlice", any, true, in -> in.get(0).get("1:3, ::2"), s(4, 5)));
        l.add(c("getFixed", any, true, in -> in.get(0).get(2), s(4, 5)));
        l.add(c("getFixedSlice", any, true, in -> in.get(0).get(":, 1"), s(4, 5)));
        l.add(c("getPick", Domain.LABELS10, true,
                in -> in.get(0).get(new NDIndex().addAllDim().addPickDim(in.get(1))), s(6, 10), s(6)));
        l.add(c("gather", Domain.LABELS10, true, in -> in.get(0).gather(in.get(1).reshape(6, 1), 1), s(6, 10), s(6)));
        l.add(c("getTake", Domain.LABELS10, true, in -> in.get(0).get(new NDIndex("{}", in.get(1).get("0:3"))), s(10, 3), s(6)));
        l.add(c("take", Domain.LABELS10, true, in -> in.get(0).take(in.get(1)), s(2, 5), s(6)));
        l.add(c("concat", any, true, in -> NDArrays.concat(new NDList(in.get(0), in.get(1)), 1), s(3, 2), s(3, 4)));
        l.add(c("stack", any, true, in -> NDArrays.stack(new NDList(in.get(0), in.get(1)), 1), s(3, 2), s(3, 2)));
        l.add(c("split", any, true, in -> in.get(0).split(new long[] {1, 3}, 1).get(1), s(2, 5)));
        l.add(c("splitSections", any, true, in -> in.get(0).split(3, 0).get(2), s(6, 2)));
        l.add(c("oneHot", Domain.LABELS10, false, in -> in.get(1).oneHot(10), s(1), s(6)));
        l.add(c("toTypeF64", any, false, in -> in.get(0).toType(DataType.FLOAT64, false), s(5)));
        l.add(c("toTypeInt", any, false, in -> in.get(0).mul(10).toType(DataType.INT32, false), s(5)));
        l.add(c("duplicate", any, false, in -> in.get(0).duplicate(), s(5)));
        l.add(c("stopGradient", any, false, in -> in.get(0).stopGradient(), s(5)));
        // products
        l.add(loose("matMul", true, in -> in.get(0).matMul(in.get(1)), s(5, 7), s(7, 3)));
        l.add(loose("matMulBatched", true, in -> in.get(0).matMul(in.get(1)), s(2, 5, 7), s(2, 7, 3)));
        l.add(loose("batchMatMul", true, in -> in.get(0).batchMatMul(in.get(1)), s(2, 5, 7), s(2, 7, 3)));
        l.add(loose("dot", true, in -> in.get(0).dot(in.get(1)), s(4, 6), s(6, 2)));
        l.add(loose("dotVectors", true, in -> in.get(0).dot(in.get(1)), s(6), s(6)));
        // activations and layers (through DJL's blocks' functions)
        l.add(c("relu", any, true, in -> Activation.relu(in.get(0)), s(4, 5)));
        l.add(c("sigmoid", any, true, in -> Activation.sigmoid(in.get(0)), s(4, 5)));
        l.add(c("tanhActivation", any, true, in -> Activation.tanh(in.get(0)), s(4, 5)));
        l.add(c("softPlus", any, true, in -> Activation.softPlus(in.get(0)), s(4, 5)));
        l.add(c("softSign", any, true, in -> Activation.softSign(in.get(0)), s(4, 5)));
        l.add(c("leakyRelu", any, true, in -> Activation.leakyRelu(in.get(0), 0.1f), s(4, 5)));
        l.add(c("elu", any, true, in -> Activation.elu(in.get(0), 0.7f), s(4, 5)));
        l.add(c("selu", any, true, in -> Activation.selu(in.get(0)), s(4, 5)));
        l.add(c("gelu", any, true, in -> Activation.gelu(in.get(0)), s(4, 5)));
        l.add(c("maxPool2d", any, true, in -> Pool.maxPool2d(in.get(0), new Shape(2, 2), new Shape(2, 2), new Shape(0, 0), false), s(2, 3, 7, 6)));
        l.add(c("maxPool2dPadCeil", any, true, in -> Pool.maxPool2d(in.get(0), new Shape(3, 3), new Shape(2, 2), new Shape(1, 1), true), s(1, 2, 7, 8)));
        l.add(c("avgPool2d", any, true, in -> Pool.avgPool2d(in.get(0), new Shape(3, 3), new Shape(2, 2), new Shape(1, 1), false, true), s(2, 3, 7, 6)));
        l.add(c("maxPool1d", any, true, in -> Pool.maxPool1d(in.get(0), new Shape(3), new Shape(2), new Shape(0), false), s(2, 3, 9)));
        l.add(c("globalAvgPool", any, true, in -> Pool.globalAvgPool2d(in.get(0)), s(2, 3, 5, 4)));
        l.add(c("globalMaxPool", any, true, in -> Pool.globalMaxPool2d(in.get(0)), s(2, 3, 5, 4)));
        l.add(loose("conv2d", true, in -> Conv2d.conv2d(in.get(0), in.get(1), in.get(2), new Shape(1, 1), new Shape(1, 1)).singletonOrThrow(), s(2, 3, 7, 6), s(4, 3, 3, 3), s(4)));
        l.add(loose("conv2dStrideDilation", true, in -> Conv2d.conv2d(in.get(0), in.get(1), null, new Shape(2, 1), new Shape(2, 0), new Shape(2, 2)).singletonOrThrow(), s(1, 2, 9, 8), s(3, 2, 3, 3)));
        l.add(loose("conv2dGroups", true, in -> Conv2d.conv2d(in.get(0), in.get(1), in.get(2), new Shape(1, 1), new Shape(0, 0), new Shape(1, 1), 2).singletonOrThrow(), s(2, 4, 5, 5), s(6, 2, 3, 3), s(6)));
        l.add(loose("conv1d", true, in -> ai.djl.nn.convolutional.Conv1d.conv1d(in.get(0), in.get(1), in.get(2), new Shape(1), new Shape(1)).singletonOrThrow(), s(2, 3, 9), s(4, 3, 3), s(4)));
        l.add(loose("linear", true, in -> Linear.linear(in.get(0), in.get(1), in.get(2)).singletonOrThrow(), s(5, 7), s(3, 7), s(3)));
        l.add(loose("linearNoBias", true, in -> Linear.linear(in.get(0), in.get(1)).singletonOrThrow(), s(2, 5, 7), s(3, 7)));
        l.add(loose("layerNorm", true, in -> LayerNorm.layerNorm(in.get(0), new Shape(6), in.get(1), in.get(2), 1e-5f).singletonOrThrow(), s(4, 6), s(6), s(6)));
        l.add(loose("batchNormTraining", true, in -> BatchNorm.batchNorm(in.get(0), in.get(1).zerosLike(), in.get(1).onesLike(), in.get(1), in.get(2), 1, 0.9f, 1e-5f, true).singletonOrThrow(), s(4, 3, 5, 2), s(3), s(3)));
        l.add(loose("batchNormInference", true, in -> BatchNorm.batchNorm(in.get(0), in.get(1).mul(0.1), in.get(2).abs().add(0.5), in.get(1), in.get(2), 1, 0.9f, 1e-5f, false).singletonOrThrow(), s(4, 3, 5, 2), s(3), s(3)));
        l.add(loose("batchNorm1d", true, in -> BatchNorm.batchNorm(in.get(0), in.get(1).zerosLike(), in.get(1).onesLike(), in.get(1), in.get(2), 1, 0.9f, 1e-5f, true).singletonOrThrow(), s(8, 3), s(3), s(3)));
        l.add(c("dropoutEval", any, true, in -> Dropout.dropout(in.get(0), 0.5f, false).singletonOrThrow(), s(4, 5)));
        l.add(new Case("softmaxCrossEntropyLoss", new long[][] {s(6, 10), s(6)}, Domain.LABELS10, true, 1e-4, in -> Loss.softmaxCrossEntropyLoss().evaluate(new NDList(in.get(1)), new NDList(in.get(0)))));
        l.add(loose("l2Loss", true, in -> Loss.l2Loss().evaluate(new NDList(in.get(1)), new NDList(in.get(0))), s(6, 3), s(6, 3)));
        l.add(c("embedding", Domain.LABELS10, true, in -> ai.djl.nn.core.Embedding.embedding(in.get(1), in.get(0), ai.djl.ndarray.types.SparseFormat.DENSE).singletonOrThrow(), s(10, 4), s(6)));
        // creation
        l.add(c("zeros", any, false, in -> in.getManager().zeros(new Shape(2, 3)), s(1)));
        l.add(c("ones", any, false, in -> in.getManager().ones(new Shape(2, 3), DataType.INT32), s(1)));
        l.add(c("full", any, false, in -> in.getManager().full(new Shape(3), 2.5f), s(1)));
        l.add(c("arange", any, false, in -> in.getManager().arange(1f, 4f, 0.5f), s(1)));
        l.add(c("arangeInt", any, false, in -> in.getManager().arange(0, 10, 3), s(1)));
        l.add(c("linspace", any, false, in -> in.getManager().linspace(-1f, 2f, 7), s(1)));
        l.add(c("eye", any, false, in -> in.getManager().eye(3, 4, 0, DataType.FLOAT32), s(1)));
        l.add(c("createDoubles", any, false, in -> in.getManager().create(new double[] {1.5, -2, 3}), s(1)));
        l.add(c("createInts", any, false, in -> in.getManager().create(new int[] {1, -2, 3}, new Shape(3, 1)), s(1)));
        l.add(c("createBooleans", any, false, in -> in.getManager().create(new boolean[] {true, false}), s(1)));
        return l.stream();
    }

    /** Fresh random float32 inputs for a case (labels: int64 in [0, 10)), as host arrays. */
    private static List<float[]> inputs(Case k, long seed) {
        Random r = new Random(seed);
        List<float[]> out = new ArrayList<>();
        for (int i = 0; i < k.shapes().length; i++) {
            int n = Math.toIntExact(new Shape(k.shapes()[i]).size());
            float[] v = new float[n];
            for (int j = 0; j < n; j++) {
                if (k.domain() == Domain.LABELS10 && i == 1) {
                    v[j] = r.nextInt(10);
                } else if (k.domain() == Domain.POSITIVE) {
                    v[j] = 0.2f + 1.8f * r.nextFloat();
                } else {
                    v[j] = 4 * r.nextFloat() - 2;
                }
            }
            out.add(v);
        }
        return out;
    }

    private static NDList arrays(NDManager m, Case k, List<float[]> values) {
        NDList in = new NDList();
        for (int i = 0; i < values.size(); i++) {
            NDArray a = m.create(values.get(i), new Shape(k.shapes()[i]));
            if (k.domain() == Domain.LABELS10 && i == 1) {
                a = a.toType(DataType.INT64, false);
            }
            in.add(a);
        }
        return in;
    }

    /** The output, and (when differentiable) the gradient of sum(output * weights) with respect to input 0. */
    private record Result(Shape shape, DataType type, double[] values, double[] gradient) {
    }

    private static Result run(Engine engine, Case k, List<float[]> values) {
        try (NDManager m = engine.newBaseManager()) {
            NDList in = arrays(m, k, values);
            NDArray out = k.op().apply(in);
            Result plain = new Result(out.getShape(), out.getDataType(), Engines.values(out), null);
            if (!k.grad()) {
                return plain;
            }
            NDArray x = in.get(0);
            x.setRequiresGradient(true);
            try (GradientCollector gc = engine.newGradientCollector()) {
                NDArray y = k.op().apply(in);
                Random r = new Random(99);
                float[] w = new float[Math.toIntExact(y.getShape().size())];
                for (int i = 0; i < w.length; i++) {
                    w[i] = 2 * r.nextFloat() - 1;
                }
                NDArray weights = m.create(w, y.getShape()).toType(y.getDataType(), false);
                gc.backward(y.mul(weights).sum());
            }
            return new Result(plain.shape(), plain.type(), plain.values(), Engines.values(x.getGradient()));
        }
    }

    /** Whether two results have the same shape, type, values and gradient, within the case's tolerance. */
    private static boolean agrees(Result expected, Result actual, Case k) {
        return expected.shape().equals(actual.shape()) && expected.type() == actual.type()
                && close(expected.values(), actual.values(), k.tol())
                && (!k.grad() || close(expected.gradient(), actual.gradient(), k.tol()));
    }

    private static boolean close(double[] expected, double[] actual, double tol) {
        if (expected.length != actual.length) {
            return false;
        }
        for (int i = 0; i < expected.length; i++) {
            if (!close(expected[i], actual[i], tol)) {
                return false;
            }
        }
        return true;
    }

    private static boolean close(double e, double a, double tol) {
        return (Double.isNaN(e) && Double.isNaN(a)) || e == a || Math.abs(e - a) <= tol + tol * Math.abs(e);
    }

    private static void assertClose(String what, double[] expected, double[] actual, double tol) {
        assertEquals(expected.length, actual.length, what + ": sizes");
        for (int i = 0; i < expected.length; i++) {
            double e = expected[i];
            double a = actual[i];
            boolean ok = close(e, a, tol);
            int at = i;
            assertTrue(ok, () -> what + ": element " + at + " is " + a + ", PyTorch gives " + e + " (tolerance " + tol + ")");
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void matchesPyTorch(Case k) {
        Engine torch = Engines.pytorch();
        List<float[]> values = inputs(k, k.name().hashCode());
        Result ours = run(Engines.cortado(), k, values);
        Result theirs = run(torch, k, values);
        if (!agrees(theirs, ours, k)) {
            // The peer is asked once more before Cortado is judged: in one CI run PyTorch (through
            // DJL) gave an all-zero gradient for maximumScalar, and the right one when run again.
            // Cortado's answer is deterministic; if it is wrong, the second answer disagrees too.
            Result again = run(torch, k, values);
            if (!agrees(theirs, again, k)) {
                System.err.println(k.name() + ": PyTorch gave two different answers to the same inputs; the second is used");
            }
            theirs = again;
        }
        assertEquals(theirs.shape(), ours.shape(), k.name() + ": shape");
        assertEquals(theirs.type(), ours.type(), k.name() + ": data type");
        assertClose(k.name(), theirs.values(), ours.values(), k.tol());
        if (k.grad()) {
            assertClose(k.name() + " gradient", theirs.gradient(), ours.gradient(), k.tol());
        }
    }

    /** DJL's documented results, by hand, on Cortado alone (runs without PyTorch). */
    @Test
    void documentedSemantics() {
        try (NDManager m = Engines.cortado().newBaseManager()) {
            NDArray a = m.create(new float[] {1, 2, 3, 4, 5, 6}, new Shape(2, 3));
            assertArrayEquals(new float[] {2, 4, 6, 5, 7, 9}, a.add(m.create(new float[] {1, 2, 3})).toFloatArray());
            assertArrayEquals(new float[] {6, 15}, a.sum(new int[] {1}).toFloatArray());
            assertEquals(new Shape(2, 1), a.sum(new int[] {1}, true).getShape());
            assertArrayEquals(new float[] {2.5f, 3.5f, 4.5f}, a.mean(new int[] {0}).toFloatArray());
            assertArrayEquals(new long[] {2, 2}, a.argMax(1).toLongArray());
            assertEquals(5L, a.argMax().getLong());
            assertArrayEquals(new float[] {1, 4, 2, 5, 3, 6}, a.transpose().toFloatArray());
            assertEquals(new Shape(3, 2), a.transpose().getShape());
            assertArrayEquals(new float[] {4, 5, 6}, a.get(1).toFloatArray());
            assertArrayEquals(new float[] {2, 5}, a.get(":, 1").toFloatArray());
            assertArrayEquals(new float[] {1, 3, 4, 6}, a.get(":, ::2").toFloatArray());
            assertArrayEquals(new float[] {22, 28, 49, 64},
                    a.matMul(m.create(new float[] {1, 2, 3, 4, 5, 6}, new Shape(3, 2))).toFloatArray());
            assertArrayEquals(new float[] {32}, m.create(new float[] {1, 2, 3}).dot(m.create(new float[] {4, 5, 6})).toFloatArray());
            // pick: the element of each row at its label
            NDArray picked = a.get(new NDIndex().addAllDim().addPickDim(m.create(new long[] {2, 0})));
            assertArrayEquals(new float[] {3, 4}, picked.toFloatArray());
            assertArrayEquals(new float[] {0, 0, 1, 1, 0, 0}, m.create(new long[] {2, 0}).oneHot(3).toFloatArray());
            assertArrayEquals(new float[] {1, 2, 3, 1, 2, 3, 4, 5, 6, 4, 5, 6}, a.tile(1, 2).toFloatArray());
            assertArrayEquals(new float[] {1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6}, a.repeat(1, 2).toFloatArray());
            assertArrayEquals(new boolean[] {false, true, true, false, false, false},
                    a.gt(1).logicalAnd(a.lt(4)).toBooleanArray());
            assertArrayEquals(new float[] {0, 0.5f, 1, 1.5f}, m.arange(0f, 2f, 0.5f).toFloatArray());
            assertArrayEquals(new float[] {0, 0.25f, 0.5f, 0.75f, 1}, m.linspace(0, 1, 5).toFloatArray());
            NDList parts = m.arange(6f).split(new long[] {2, 5});
            assertEquals(3, parts.size());
            assertArrayEquals(new float[] {2, 3, 4}, parts.get(1).toFloatArray());
            NDArray b = a.duplicate();
            b.set(new NDIndex("0, 1:"), 0f);
            assertArrayEquals(new float[] {1, 0, 0, 4, 5, 6}, b.toFloatArray());
            b.set(new NDIndex(":, 0"), m.create(new float[] {7, 8}));
            assertArrayEquals(new float[] {7, 0, 0, 8, 5, 6}, b.toFloatArray());
            assertTrue(a.contentEquals(a.duplicate()));
            NDArray target = m.zeros(new Shape(2, 3));
            target.set(java.nio.FloatBuffer.wrap(new float[] {6, 5, 4, 3, 2, 1}));
            assertArrayEquals(new float[] {6, 5, 4, 3, 2, 1}, target.toFloatArray());
            NDArray replacement = m.ones(new Shape(4));
            target.intern(replacement);
            assertTrue(replacement.isReleased());
            assertEquals(new Shape(4), target.getShape());
            assertArrayEquals(new float[] {1, 1, 1, 1}, target.toFloatArray());
            java.nio.ByteBuffer bytes = a.toByteBuffer();
            assertEquals(24, bytes.remaining());
            assertEquals(2f, bytes.order(java.nio.ByteOrder.nativeOrder()).asFloatBuffer().get(1));
            assertTrue(m.full(new Shape(2), 3f).contentEquals(3f));
            // average pooling that leaves the padding out of the count (DJL's PyTorch engine ignores
            // countIncludePad and always counts it: 4/9 in a 3x3 corner window)
            NDArray ones = m.ones(new Shape(1, 1, 3, 3));
            assertArrayEquals(new float[] {1, 1, 1, 1, 1, 1, 1, 1, 1}, Pool.avgPool2d(ones, new Shape(3, 3),
                    new Shape(1, 1), new Shape(1, 1), false, false).toFloatArray(), 1e-6f);
            assertEquals(4f / 9, Pool.avgPool2d(ones, new Shape(3, 3), new Shape(1, 1), new Shape(1, 1), false, true)
                    .toFloatArray()[0], 1e-6f);
            float[] sm = m.create(new float[] {0, (float) Math.log(3)}).softmax(0).toFloatArray();
            assertArrayEquals(new float[] {0.25f, 0.75f}, sm, 1e-6f);
        }
    }
}
