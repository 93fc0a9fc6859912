package dev.cortado.optim;

import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * The fused optimizer kernels ({@code cortado/optim.h}) as plain functions over tensor lists,
 * with the general coefficients that express both PyTorch's and ONNX's update rules (see
 * docs/optim.md for the mapping). {@link Sgd}, {@link Adam} and {@link Adagrad} are built on
 * these; use them directly to run a foreign rule (the ONNX training ops) or to manage state
 * yourself. Every list is aligned with {@code params}; all tensors must be open, contiguous, on
 * one device, with the shapes of their parameters; states have the parameter dtype (float32 or
 * float64), gradients the parameter dtype or float16/bfloat16 with float32 parameters. Each call
 * updates params and states in place in one pass that reads every gradient once.
 */
public final class OptimKernels {
    private OptimKernels() {
    }

    /**
     * SGD with momentum: {@code g' = gradScale*g + l2*p; b = alpha*b + beta*g';
     * d = nesterov ? g' + alpha*b : b; p -= lr*d} (no buffers: {@code p -= lr*g'}).
     */
    public record SgdCoef(double lr, double l2, double alpha, double beta, boolean nesterov, double gradScale) {
        /** PyTorch SGD at step {@code step} (1-based): the first step takes the whole gradient (beta 1). */
        public static SgdCoef pytorch(double lr, double momentum, double dampening, double weightDecay,
                                      boolean nesterov, long step) {
            return new SgdCoef(lr, weightDecay, momentum, step <= 1 ? 1.0 : 1.0 - dampening, nesterov, 1.0);
        }

        /** ONNX Momentum (ai.onnx.preview.training): R, T (updates done so far), alpha, beta, norm_coefficient. */
        public static SgdCoef onnx(double r, long t, double alpha, double beta, double normCoefficient,
                                   boolean nesterov) {
            return new SgdCoef(r, normCoefficient, alpha, t > 0 ? beta : 1.0, nesterov, 1.0);
        }
    }

    /**
     * Adam family: {@code g' = gradScale*g + l2*p; p *= 1 - decoupled; m = b1*m + (1-b1)*g';
     * v = b2*v + (1-b2)*g'^2; vm = amsgrad ? max(vm, v) : v;
     * p = (p - stepSize*m / (sqrt(vm)*denomScale + eps)) * postScale}.
     */
    public record AdamCoef(double beta1, double beta2, double eps, double l2, double decoupled, double stepSize,
                           double denomScale, double postScale, double gradScale) {
        /**
         * PyTorch Adam ({@code decoupled == false}: weight decay added to the gradient) or AdamW
         * (decoupled: {@code p *= 1 - lr*wd}) at step {@code step} (1-based).
         */
        public static AdamCoef pytorch(double lr, double beta1, double beta2, double eps, double weightDecay,
                                       boolean decoupled, long step) {
            double bc1 = 1 - Math.pow(beta1, step);
            double bc2 = 1 - Math.pow(beta2, step);
            return new AdamCoef(beta1, beta2, eps, decoupled ? 0 : weightDecay, decoupled ? lr * weightDecay : 0,
                    lr / bc1, 1 / Math.sqrt(bc2), 1.0, 1.0);
        }

        /**
         * ONNX Adam: R, T (updates done so far; T == 0 means no bias correction), alpha, beta,
         * epsilon, norm_coefficient (added to the gradient), norm_coefficient_post (the result is
         * scaled by 1 - it).
         */
        public static AdamCoef onnx(double r, long t, double alpha, double beta, double epsilon,
                                    double normCoefficient, double normCoefficientPost) {
            double step = t > 0 ? r * Math.sqrt(1 - Math.pow(beta, t)) / (1 - Math.pow(alpha, t)) : r;
            return new AdamCoef(alpha, beta, epsilon, normCoefficient, 0, step, 1.0, 1 - normCoefficientPost, 1.0);
        }
    }

    /** Adagrad: {@code g' = gradScale*g + l2*p; h += g'^2; p -= lr*g' / (sqrt(h) + eps)}. */
    public record AdagradCoef(double lr, double l2, double eps, double gradScale) {
        /** PyTorch Adagrad at step {@code step} (1-based): {@code lr / (1 + (step-1)*lrDecay)}. */
        public static AdagradCoef pytorch(double lr, double lrDecay, double weightDecay, double eps, long step) {
            return new AdagradCoef(lr / (1 + (step - 1) * lrDecay), weightDecay, eps, 1.0);
        }

        /** ONNX Adagrad: R, T (updates done so far), decay_factor, epsilon, norm_coefficient. */
        public static AdagradCoef onnx(double r, long t, double decayFactor, double epsilon, double normCoefficient) {
            return new AdagradCoef(r / (1 + t * decayFactor), normCoefficient, epsilon, 1.0);
        }
    }

    public static void sgd(List<Tensor> params, List<Tensor> grads, List<Tensor> momentumBufs, SgdCoef c) {
        String op = "OptimKernels.sgd";
        if (c.nesterov() && momentumBufs == null) {
            throw new IllegalArgumentException(op + ": Nesterov momentum needs momentum buffers");
        }
        DType[] t = check(op, params, grads, new String[] {"momentumBufs"}, momentumBufs);
        if (params.isEmpty()) {
            return;
        }
        MultiTensor.sgd(op, params.get(0).device(), t[0], t[1], params, grads, momentumBufs, c);
    }

    public static void adam(List<Tensor> params, List<Tensor> grads, List<Tensor> expAvgs, List<Tensor> expAvgSqs,
                            List<Tensor> maxExpAvgSqs, AdamCoef c) {
        String op = "OptimKernels.adam";
        if (expAvgs == null || expAvgSqs == null) {
            throw new IllegalArgumentException(op + ": expAvgs and expAvgSqs are required");
        }
        DType[] t = check(op, params, grads, new String[] {"expAvgs", "expAvgSqs", "maxExpAvgSqs"}, expAvgs,
                expAvgSqs, maxExpAvgSqs);
        if (params.isEmpty()) {
            return;
        }
        MultiTensor.adam(op, params.get(0).device(), t[0], t[1], params, grads, expAvgs, expAvgSqs, maxExpAvgSqs, c);
    }

    public static void adagrad(List<Tensor> params, List<Tensor> grads, List<Tensor> sums, AdagradCoef c) {
        String op = "OptimKernels.adagrad";
        if (sums == null) {
            throw new IllegalArgumentException(op + ": sums are required");
        }
        DType[] t = check(op, params, grads, new String[] {"sums"}, sums);
        if (params.isEmpty()) {
            return;
        }
        MultiTensor.adagrad(op, params.get(0).device(), t[0], t[1], params, grads, sums, c);
    }

    /** Checks the lists; returns {param dtype, grad dtype} (nulls when empty). */
    @SafeVarargs
    private static DType[] check(String op, List<Tensor> params, List<Tensor> grads, String[] stateNames,
                                 List<Tensor>... states) {
        if (params == null || grads == null) {
            throw new IllegalArgumentException(op + ": params and grads are required");
        }
        int n = params.size();
        if (grads.size() != n) {
            throw new IllegalArgumentException(op + ": " + n + " params but " + grads.size() + " grads");
        }
        for (int k = 0; k < states.length; k++) {
            if (states[k] != null && states[k].size() != n) {
                throw new IllegalArgumentException(op + ": " + n + " params but " + states[k].size() + " "
                        + stateNames[k]);
            }
        }
        if (n == 0) {
            return new DType[2];
        }
        Tensor p0 = params.get(0);
        Device dev = p0.device();
        DType pd = p0.dtype();
        DType gd = grads.get(0).dtype();
        if (pd != DType.FLOAT32 && pd != DType.FLOAT64) {
            throw new UnsupportedOperationException(op + ": params[0] is " + p0.describe()
                    + "; parameters must be float32 or float64");
        }
        if (!(gd == pd || (pd == DType.FLOAT32 && (gd == DType.FLOAT16 || gd == DType.BFLOAT16)))) {
            throw new IllegalArgumentException(op + ": grads[0] is " + grads.get(0).describe() + " for params[0] "
                    + p0.describe() + "; gradients must have the parameter dtype, or float16/bfloat16 with float32");
        }
        for (int i = 0; i < n; i++) {
            Tensor p = params.get(i);
            requireOperand(op, "params", i, p, p0, pd, dev);
            requireOperand(op, "grads", i, grads.get(i), p, gd, dev);
            for (int k = 0; k < states.length; k++) {
                if (states[k] != null) {
                    requireOperand(op, stateNames[k], i, states[k].get(i), p, pd, dev);
                }
            }
        }
        return new DType[] {pd, gd};
    }

    private static void requireOperand(String op, String list, int i, Tensor t, Tensor param, DType dtype, Device dev) {
        if (t == null) {
            throw new IllegalArgumentException(op + ": " + list + "[" + i + "] is null");
        }
        t.ensureOpen(op);
        if (t.dtype() != dtype || !t.device().equals(dev)) {
            throw new IllegalArgumentException(op + ": " + list + "[" + i + "] is " + t.describe() + ", expected "
                    + dtype + " on " + dev + " (one call takes one dtype and one device)");
        }
        if (!list.equals("params") && !t.shape().equals(param.shape())) {
            throw new IllegalArgumentException(op + ": " + list + "[" + i + "] is " + t.describe()
                    + " but params[" + i + "] is " + param.describe() + " (shapes differ)");
        }
        if (!t.isContiguous()) {
            throw new IllegalArgumentException(op + ": " + list + "[" + i + "] " + t.describe() + " with strides "
                    + Arrays.toString(t.strides()) + " is not contiguous; the fused kernels update dense memory in place");
        }
    }

    /** Sum of squares of all elements of {@code tensors} (any floating dtypes and devices), in float64. */
    public static double sumOfSquares(List<Tensor> tensors) {
        double total = 0;
        for (List<Tensor> batch : byDeviceAndDtype("OptimKernels.sumOfSquares", tensors)) {
            Tensor f = batch.get(0);
            total += MultiTensor.sumSquares("OptimKernels.sumOfSquares", f.device(), f.dtype(), batch);
        }
        return total;
    }

    /** Multiplies every tensor in place by {@code factor}. */
    public static void scale(List<Tensor> tensors, double factor) {
        for (List<Tensor> batch : byDeviceAndDtype("OptimKernels.scale", tensors)) {
            Tensor f = batch.get(0);
            MultiTensor.scale("OptimKernels.scale", f.device(), f.dtype(), batch, factor);
        }
    }

    /** Multiplies every tensor in place by {@code invScale}; true when any result is inf or NaN. */
    public static boolean unscaleAndCheck(List<Tensor> tensors, double invScale) {
        boolean found = false;
        for (List<Tensor> batch : byDeviceAndDtype("OptimKernels.unscaleAndCheck", tensors)) {
            Tensor f = batch.get(0);
            found |= MultiTensor.unscaleCheck("OptimKernels.unscaleAndCheck", f.device(), f.dtype(), batch, invScale);
        }
        return found;
    }

    /** Splits a tensor list into batches of one device and dtype, checking each tensor. */
    static List<List<Tensor>> byDeviceAndDtype(String op, List<Tensor> tensors) {
        java.util.Map<List<Object>, List<Tensor>> m = new java.util.LinkedHashMap<>();
        for (int i = 0; i < tensors.size(); i++) {
            Tensor t = tensors.get(i);
            if (t == null) {
                throw new IllegalArgumentException(op + ": tensor " + i + " is null");
            }
            t.ensureOpen(op);
            if (!t.dtype().isFloatingPoint()) {
                throw new IllegalArgumentException(op + ": tensor " + i + " is " + t.describe()
                        + "; only floating tensors are supported");
            }
            if (!t.isContiguous()) {
                throw new IllegalArgumentException(op + ": tensor " + i + " " + t.describe() + " with strides "
                        + Arrays.toString(t.strides()) + " is not contiguous; the kernel works on dense memory in place");
            }
            m.computeIfAbsent(List.of(t.device(), t.dtype()), k -> new ArrayList<>()).add(t);
        }
        return new ArrayList<>(m.values());
    }
}
