package dev.cortado.ops;

import dev.cortado.tensor.Tensor;
import dev.cortado.tensor.TensorOps;

/**
 * {@link Tensor}'s op methods, bound to the family calls of the same names. {@code Tensor} loads
 * this class by name on the first op method call; it installs itself into {@link TensorOps}.
 */
final class TensorMethods implements TensorOps {
    static {
        TensorOps.install(new TensorMethods());
    }

    private TensorMethods() {
    }

    @Override public Tensor neg(Tensor x) { return Elementwise.neg(x); }
    @Override public Tensor abs(Tensor x) { return Elementwise.abs(x); }
    @Override public Tensor exp(Tensor x) { return Elementwise.exp(x); }
    @Override public Tensor log(Tensor x) { return Elementwise.log(x); }
    @Override public Tensor sqrt(Tensor x) { return Elementwise.sqrt(x); }
    @Override public Tensor rsqrt(Tensor x) { return Elementwise.rsqrt(x); }
    @Override public Tensor reciprocal(Tensor x) { return Elementwise.reciprocal(x); }
    @Override public Tensor sin(Tensor x) { return Elementwise.sin(x); }
    @Override public Tensor cos(Tensor x) { return Elementwise.cos(x); }
    @Override public Tensor tanh(Tensor x) { return Elementwise.tanh(x); }
    @Override public Tensor sigmoid(Tensor x) { return Elementwise.sigmoid(x); }
    @Override public Tensor relu(Tensor x) { return Elementwise.relu(x); }
    @Override public Tensor gelu(Tensor x) { return Elementwise.gelu(x); }
    @Override public Tensor silu(Tensor x) { return Elementwise.silu(x); }
    @Override public Tensor pow(Tensor x, double exponent) { return Elementwise.pow(x, exponent); }
    @Override public Tensor clamp(Tensor x, double min, double max) { return Elementwise.clamp(x, min, max); }
    @Override public Tensor logicalNot(Tensor x) { return Elementwise.logicalNot(x); }

    @Override public Tensor add(Tensor a, Tensor b) { return Elementwise.add(a, b); }
    @Override public Tensor add(Tensor a, double b) { return Elementwise.add(a, b); }
    @Override public Tensor sub(Tensor a, Tensor b) { return Elementwise.sub(a, b); }
    @Override public Tensor sub(Tensor a, double b) { return Elementwise.sub(a, b); }
    @Override public Tensor mul(Tensor a, Tensor b) { return Elementwise.mul(a, b); }
    @Override public Tensor mul(Tensor a, double b) { return Elementwise.mul(a, b); }
    @Override public Tensor div(Tensor a, Tensor b) { return Elementwise.div(a, b); }
    @Override public Tensor div(Tensor a, double b) { return Elementwise.div(a, b); }
    @Override public Tensor pow(Tensor a, Tensor b) { return Elementwise.pow(a, b); }
    @Override public Tensor maximum(Tensor a, Tensor b) { return Elementwise.maximum(a, b); }
    @Override public Tensor minimum(Tensor a, Tensor b) { return Elementwise.minimum(a, b); }
    @Override public Tensor eq(Tensor a, Tensor b) { return Elementwise.eq(a, b); }
    @Override public Tensor eq(Tensor a, double b) { return Elementwise.eq(a, b); }
    @Override public Tensor ne(Tensor a, Tensor b) { return Elementwise.ne(a, b); }
    @Override public Tensor ne(Tensor a, double b) { return Elementwise.ne(a, b); }
    @Override public Tensor lt(Tensor a, Tensor b) { return Elementwise.lt(a, b); }
    @Override public Tensor lt(Tensor a, double b) { return Elementwise.lt(a, b); }
    @Override public Tensor le(Tensor a, Tensor b) { return Elementwise.le(a, b); }
    @Override public Tensor le(Tensor a, double b) { return Elementwise.le(a, b); }
    @Override public Tensor gt(Tensor a, Tensor b) { return Elementwise.gt(a, b); }
    @Override public Tensor gt(Tensor a, double b) { return Elementwise.gt(a, b); }
    @Override public Tensor ge(Tensor a, Tensor b) { return Elementwise.ge(a, b); }
    @Override public Tensor ge(Tensor a, double b) { return Elementwise.ge(a, b); }
    @Override public Tensor logicalAnd(Tensor a, Tensor b) { return Elementwise.logicalAnd(a, b); }
    @Override public Tensor logicalOr(Tensor a, Tensor b) { return Elementwise.logicalOr(a, b); }
    @Override public Tensor where(Tensor condition, Tensor a, Tensor b) { return Elementwise.where(condition, a, b); }

    @Override public Tensor sum(Tensor x, boolean keepDim, int... dims) { return Reductions.sum(x, keepDim, dims); }
    @Override public Tensor mean(Tensor x, boolean keepDim, int... dims) { return Reductions.mean(x, keepDim, dims); }
    @Override public Tensor max(Tensor x, boolean keepDim, int... dims) { return Reductions.max(x, keepDim, dims); }
    @Override public Tensor min(Tensor x, boolean keepDim, int... dims) { return Reductions.min(x, keepDim, dims); }
    @Override public Tensor argmax(Tensor x) { return Reductions.argmax(x); }
    @Override public Tensor argmax(Tensor x, int dim, boolean keepDim) { return Reductions.argmax(x, dim, keepDim); }
    @Override public Tensor argmin(Tensor x) { return Reductions.argmin(x); }
    @Override public Tensor argmin(Tensor x, int dim, boolean keepDim) { return Reductions.argmin(x, dim, keepDim); }

    @Override public Tensor softmax(Tensor x, int dim) { return Normalization.softmax(x, dim); }
    @Override public Tensor logSoftmax(Tensor x, int dim) { return Normalization.logSoftmax(x, dim); }
    @Override public Tensor matmul(Tensor a, Tensor b) { return LinearAlgebra.matmul(a, b); }
}
