package dev.cortado.tensor;

/**
 * The seam between {@link Tensor}'s op methods ({@code x.matmul(w).add(b).relu()}) and the ops
 * that compute them. The ops live in {@code dev.cortado.ops}, above this package; its
 * implementation ({@code dev.cortado.ops.TensorMethods}) installs itself here when loaded, and
 * {@link Tensor} loads it by name the first time an op method is called, so this package does not
 * depend on ops (as {@link AutogradHook} does for autograd). Each method is the family call of the
 * same name ({@code Elementwise.add}, {@code Reductions.sum}, ...), documented on {@link Tensor}.
 */
public interface TensorOps {
    // elementwise, unary
    Tensor neg(Tensor x);

    Tensor abs(Tensor x);

    Tensor exp(Tensor x);

    Tensor log(Tensor x);

    Tensor sqrt(Tensor x);

    Tensor rsqrt(Tensor x);

    Tensor reciprocal(Tensor x);

    Tensor sin(Tensor x);

    Tensor cos(Tensor x);

    Tensor tanh(Tensor x);

    Tensor sigmoid(Tensor x);

    Tensor relu(Tensor x);

    Tensor gelu(Tensor x);

    Tensor silu(Tensor x);

    Tensor pow(Tensor x, double exponent);

    Tensor clamp(Tensor x, double min, double max);

    Tensor logicalNot(Tensor x);

    // elementwise, binary (broadcasting)
    Tensor add(Tensor a, Tensor b);

    Tensor add(Tensor a, double b);

    Tensor sub(Tensor a, Tensor b);

    Tensor sub(Tensor a, double b);

    Tensor mul(Tensor a, Tensor b);

    Tensor mul(Tensor a, double b);

    Tensor div(Tensor a, Tensor b);

    Tensor div(Tensor a, double b);

    Tensor pow(Tensor a, Tensor b);

    Tensor maximum(Tensor a, Tensor b);

    Tensor minimum(Tensor a, Tensor b);

    Tensor eq(Tensor a, Tensor b);

    Tensor eq(Tensor a, double b);

    Tensor ne(Tensor a, Tensor b);

    Tensor ne(Tensor a, double b);

    Tensor lt(Tensor a, Tensor b);

    Tensor lt(Tensor a, double b);

    Tensor le(Tensor a, Tensor b);

    Tensor le(Tensor a, double b);

    Tensor gt(Tensor a, Tensor b);

    Tensor gt(Tensor a, double b);

    Tensor ge(Tensor a, Tensor b);

    Tensor ge(Tensor a, double b);

    Tensor logicalAnd(Tensor a, Tensor b);

    Tensor logicalOr(Tensor a, Tensor b);

    Tensor where(Tensor condition, Tensor a, Tensor b);

    // reductions (empty dims: all of them)
    Tensor sum(Tensor x, boolean keepDim, int... dims);

    Tensor mean(Tensor x, boolean keepDim, int... dims);

    Tensor max(Tensor x, boolean keepDim, int... dims);

    Tensor min(Tensor x, boolean keepDim, int... dims);

    Tensor argmax(Tensor x);

    Tensor argmax(Tensor x, int dim, boolean keepDim);

    Tensor argmin(Tensor x);

    Tensor argmin(Tensor x, int dim, boolean keepDim);

    // normalization, linear algebra
    Tensor softmax(Tensor x, int dim);

    Tensor logSoftmax(Tensor x, int dim);

    Tensor matmul(Tensor a, Tensor b);

    /** The installed implementation; loads {@code dev.cortado.ops.TensorMethods} on first use. */
    static TensorOps get() {
        TensorOps ops = Installed.ops;
        if (ops == null) {
            try {
                Class.forName("dev.cortado.ops.TensorMethods", true, TensorOps.class.getClassLoader());
            } catch (ClassNotFoundException e) {
                throw new IllegalStateException("dev.cortado.ops is not on the class path; Tensor's op methods need it", e);
            }
            ops = Installed.ops;
            if (ops == null) {
                throw new IllegalStateException("dev.cortado.ops.TensorMethods did not install itself");
            }
        }
        return ops;
    }

    /** Called once by the ops package. */
    static void install(TensorOps ops) {
        Installed.ops = ops;
    }

    /** Holder of the installed implementation. */
    final class Installed {
        static volatile TensorOps ops;

        private Installed() {
        }
    }
}
