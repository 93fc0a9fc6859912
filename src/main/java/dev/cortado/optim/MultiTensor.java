package dev.cortado.optim;

import dev.cortado.ops.Launch;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.List;
import org.bytedeco.javacpp.Pointer;

/**
 * The road from {@code dev.cortado.optim} to the fused kernels of {@code cortado/optim.h}: packs
 * the sizes and addresses of a tensor list into native int64 tables (a per-thread, growable
 * off-heap buffer, so a step allocates nothing), picks the CPU or CUDA entry point by device and
 * turns a failed status into the exception that names the call. Every tensor handed here is
 * open, contiguous and on {@code device} (the callers check, with messages for users).
 */
final class MultiTensor {
    private MultiTensor() {
    }

    /** Per-thread int64 tables: {@code rows} tables of {@code n} entries each. */
    static final class Tables {
        private static final ThreadLocal<Tables> LOCAL = ThreadLocal.withInitial(Tables::new);
        private ByteBuffer buffer;
        private long base;
        private int n;

        static Tables get(int rows, int n) {
            Tables t = LOCAL.get();
            long need = (long) rows * Math.max(n, 1);
            if (t.buffer == null || t.buffer.capacity() < need * Long.BYTES) {
                long cap = Math.max(need, 256);
                if (cap * Long.BYTES > Integer.MAX_VALUE) {
                    throw new IllegalArgumentException("too many tensors in one optimizer call: " + n);
                }
                t.buffer = ByteBuffer.allocateDirect((int) (cap * Long.BYTES)).order(ByteOrder.nativeOrder());
                t.base = new Pointer(t.buffer).address();
            }
            t.n = n;
            return t;
        }

        /** Writes the element counts into table {@code row}; returns its address. */
        long sizes(int row, List<Tensor> tensors) {
            int at = row * Math.max(n, 1);
            for (int i = 0; i < n; i++) {
                buffer.putLong((at + i) * Long.BYTES, tensors.get(i).numel());
            }
            return base + (long) at * Long.BYTES;
        }

        /** Writes the data addresses into table {@code row} (0 for empty tensors); null list: returns 0. */
        long addresses(int row, List<Tensor> tensors) {
            if (tensors == null) {
                return 0;
            }
            int at = row * Math.max(n, 1);
            for (int i = 0; i < n; i++) {
                Tensor t = tensors.get(i);
                buffer.putLong((at + i) * Long.BYTES, t.numel() == 0 ? 0 : t.dataAddress());
            }
            return base + (long) at * Long.BYTES;
        }
    }

    private static void check(Launch run, int status, String context) {
        if (status != 0) {
            throw run.failure(status, context);
        }
    }

    static void sgd(String context, Device device, DType pd, DType gd, List<Tensor> params, List<Tensor> grads,
                    List<Tensor> bufs, OptimKernels.SgdCoef c) {
        int n = params.size();
        Tables t = Tables.get(4, n);
        long sz = t.sizes(0, params);
        long p = t.addresses(1, params);
        long g = t.addresses(2, grads);
        long b = t.addresses(3, bufs);
        Launch run = Launch.on(device);
        check(run, run.kernels().optimSgd(pd.code(), gd.code(), n, sz, p, g, b, c.lr(), c.l2(), c.alpha(), c.beta(),
                c.nesterov() ? 1 : 0, c.gradScale(), run.stream()), context);
    }

    static void adam(String context, Device device, DType pd, DType gd, List<Tensor> params, List<Tensor> grads,
                     List<Tensor> m, List<Tensor> v, List<Tensor> vmax, OptimKernels.AdamCoef c) {
        int n = params.size();
        Tables t = Tables.get(6, n);
        long sz = t.sizes(0, params);
        long p = t.addresses(1, params);
        long g = t.addresses(2, grads);
        long mm = t.addresses(3, m);
        long vv = t.addresses(4, v);
        long vx = t.addresses(5, vmax);
        Launch run = Launch.on(device);
        check(run, run.kernels().optimAdam(pd.code(), gd.code(), n, sz, p, g, mm, vv, vx, c.beta1(), c.beta2(), c.eps(),
                c.l2(), c.decoupled(), c.stepSize(), c.denomScale(), c.postScale(), c.gradScale(), run.stream()), context);
    }

    static void adagrad(String context, Device device, DType pd, DType gd, List<Tensor> params, List<Tensor> grads,
                        List<Tensor> sums, OptimKernels.AdagradCoef c) {
        int n = params.size();
        Tables t = Tables.get(4, n);
        long sz = t.sizes(0, params);
        long p = t.addresses(1, params);
        long g = t.addresses(2, grads);
        long h = t.addresses(3, sums);
        Launch run = Launch.on(device);
        check(run, run.kernels().optimAdagrad(pd.code(), gd.code(), n, sz, p, g, h, c.lr(), c.l2(), c.eps(),
                c.gradScale(), run.stream()), context);
    }

    /** Sum of squares of every element of {@code tensors} (one dtype, one device), in float64. */
    static double sumSquares(String context, Device device, DType dtype, List<Tensor> tensors) {
        int n = tensors.size();
        Tables t = Tables.get(2, n);
        long sz = t.sizes(0, tensors);
        long x = t.addresses(1, tensors);
        try (Tensor acc = Tensor.zeros(DType.FLOAT64, device, 1)) {
            Launch run = Launch.on(device);
            check(run, run.kernels().optimSumSquares(dtype.code(), n, sz, x, acc.dataAddress(), run.stream()), context);
            return acc.item();
        }
    }

    static void scale(String context, Device device, DType dtype, List<Tensor> tensors, double factor) {
        int n = tensors.size();
        Tables t = Tables.get(2, n);
        long sz = t.sizes(0, tensors);
        long x = t.addresses(1, tensors);
        Launch run = Launch.on(device);
        check(run, run.kernels().optimScale(dtype.code(), n, sz, x, factor, run.stream()), context);
    }

    /** Multiplies in place by {@code invScale}; true when any result is inf or NaN. */
    static boolean unscaleCheck(String context, Device device, DType dtype, List<Tensor> tensors, double invScale) {
        int n = tensors.size();
        Tables t = Tables.get(2, n);
        long sz = t.sizes(0, tensors);
        long x = t.addresses(1, tensors);
        try (Tensor flag = Tensor.zeros(DType.INT32, device, 1)) {
            Launch run = Launch.on(device);
            check(run, run.kernels().optimUnscaleCheck(dtype.code(), n, sz, x, invScale, flag.dataAddress(),
                    run.stream()), context);
            return flag.item() != 0;
        }
    }
}
