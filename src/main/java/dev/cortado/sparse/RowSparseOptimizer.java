package dev.cortado.sparse;

import dev.cortado.ops.Launch;
import dev.cortado.tensor.Tensor;
import java.util.IdentityHashMap;
import java.util.Map;

/**
 * Lazy ("sparse") SGD with momentum and Adam for embedding tables with a
 * {@link RowSparseGradient}: a step reads and writes only the touched rows of the table and of
 * its state (momentum buffer, or Adam's two moments), so its cost is proportional to the rows a
 * batch touches, not to the table. An untouched row keeps its state as it is (its momentum does
 * not decay; PyTorch's SparseAdam has the same semantics). Adam's bias correction uses this
 * optimizer's step count per table. Kernels: {@code ct_cpu_row_sparse_sgd}/{@code _adam} and their
 * CUDA twins ({@code native/include/cortado/embedding.h}).
 *
 * <pre>{@code
 * RowSparseOptimizer opt = RowSparseOptimizer.sgd(0.1).momentum(0.9).build();
 * try (RowSparseGradient g = bag.sparseGradient()) { opt.step(bag.weight(), g); }
 * }</pre>
 * Not thread-safe; {@link #close()} frees the state.
 */
public final class RowSparseOptimizer implements AutoCloseable {
    private enum Kind { SGD, ADAM }

    private final Kind kind;
    private final double lr;
    private final double momentum;
    private final boolean nesterov;
    private final double beta1;
    private final double beta2;
    private final double eps;
    private final double weightDecay;
    private final Map<Tensor, State> states = new IdentityHashMap<>();

    private static final class State {
        Tensor a;
        Tensor b;
        long step;
    }

    private RowSparseOptimizer(Builder o) {
        kind = o.kind;
        lr = o.lr;
        momentum = o.momentum;
        nesterov = o.nesterov;
        beta1 = o.beta1;
        beta2 = o.beta2;
        eps = o.eps;
        weightDecay = o.weightDecay;
    }

    /** Lazy SGD (momentum 0 by default). */
    public static Builder sgd(double lr) {
        return new Builder(Kind.SGD, lr);
    }

    /** Lazy Adam (betas 0.9, 0.999, eps 1e-8 by default). */
    public static Builder adam(double lr) {
        return new Builder(Kind.ADAM, lr);
    }

    /** Options. */
    public static final class Builder {
        private final Kind kind;
        private final double lr;
        private double momentum;
        private boolean nesterov;
        private double beta1 = 0.9;
        private double beta2 = 0.999;
        private double eps = 1e-8;
        private double weightDecay;

        private Builder(Kind kind, double lr) {
            this.kind = kind;
            this.lr = check("lr", lr, 0, Double.MAX_VALUE);
        }

        public Builder momentum(double v) {
            momentum = check("momentum", v, 0, 1);
            return this;
        }

        public Builder nesterov(boolean v) {
            nesterov = v;
            return this;
        }

        public Builder betas(double b1, double b2) {
            beta1 = check("beta1", b1, 0, 1);
            beta2 = check("beta2", b2, 0, 1);
            return this;
        }

        public Builder eps(double v) {
            eps = check("eps", v, 0, Double.MAX_VALUE);
            return this;
        }

        public Builder weightDecay(double v) {
            weightDecay = check("weightDecay", v, 0, Double.MAX_VALUE);
            return this;
        }

        public RowSparseOptimizer build() {
            if (nesterov && (kind != Kind.SGD || momentum == 0)) {
                throw new IllegalArgumentException("RowSparseOptimizer: Nesterov needs SGD with momentum > 0");
            }
            return new RowSparseOptimizer(this);
        }

        private static double check(String what, double v, double lo, double hi) {
            if (!(v >= lo && v < hi)) {
                throw new IllegalArgumentException("RowSparseOptimizer: " + what + " must be in [" + lo + ", " + hi
                        + "), got " + v);
            }
            return v;
        }
    }

    /** Steps taken on {@code param} so far. */
    public long steps(Tensor param) {
        State s = states.get(param);
        return s == null ? 0 : s.step;
    }

    /** Updates the touched rows of {@code param} [numRows, dim] (contiguous, float32 or float64) in place. */
    public void step(Tensor param, RowSparseGradient grad) {
        param.ensureOpen("RowSparseOptimizer.step");
        Tensor rows = grad.rows();
        Tensor values = grad.values();
        if (param.rank() != 2 || !param.isContiguous() || param.size(0) != grad.numRows()
                || values.rank() != 2 || values.size(1) != param.size(1) || values.dtype() != param.dtype()
                || rows.device() != param.device() || values.device() != param.device()) {
            throw new IllegalArgumentException("RowSparseOptimizer.step: parameter " + param.describe()
                    + " (contiguous [numRows, dim]) does not match the gradient of " + grad.numRows() + " rows: rows "
                    + rows.describe() + ", values " + values.describe());
        }
        State s = states.computeIfAbsent(param, p -> new State());
        if (s.a == null && (kind == Kind.ADAM || momentum != 0)) {
            s.a = Tensor.zeros(param.dtype(), param.device(), param.dims());
            if (kind == Kind.ADAM) {
                s.b = Tensor.zeros(param.dtype(), param.device(), param.dims());
            }
        }
        s.step++;
        Launch l = Launch.on(param);
        long n = rows.numel();
        long dim = param.size(1);
        try (Tensor v = values.contiguous(); Tensor r = rows.contiguous()) {
            int status;
            if (kind == Kind.SGD) {
                status = l.kernels().rowSparseSgd(param.dtype().code(), param.size(0), dim, n, r.dataAddress(),
                        v.dataAddress(), param.dataAddress(), s.a == null ? 0 : s.a.dataAddress(), lr, momentum,
                        weightDecay, nesterov ? 1 : 0, l.stream());
            } else {
                double stepSize = lr / (1 - Math.pow(beta1, s.step));
                double denomScale = 1 / Math.sqrt(1 - Math.pow(beta2, s.step));
                status = l.kernels().rowSparseAdam(param.dtype().code(), param.size(0), dim, n, r.dataAddress(),
                        v.dataAddress(), param.dataAddress(), s.a.dataAddress(), s.b.dataAddress(), stepSize, beta1,
                        beta2, eps, denomScale, weightDecay, l.stream());
            }
            l.check(status, "RowSparseOptimizer.step(" + kind + ", param " + param.describe() + ", rows "
                    + rows.describe() + ")");
        }
    }

    @Override
    public void close() {
        for (State s : states.values()) {
            if (s.a != null) {
                s.a.close();
            }
            if (s.b != null) {
                s.b.close();
            }
        }
        states.clear();
    }
}
