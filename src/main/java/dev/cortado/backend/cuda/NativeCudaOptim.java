package dev.cortado.backend.cuda;

import org.bytedeco.javacpp.Loader;
import org.bytedeco.javacpp.annotation.Cast;
import org.bytedeco.javacpp.annotation.Platform;
import org.bytedeco.javacpp.annotation.Properties;

/**
 * JavaCPP binding of the optimizer entry points of libcortado_cuda.so ({@code cortado/optim.h}),
 * the CUDA twins of {@link dev.cortado.backend.cpu.NativeOptim}. The tables (sizes, tensor
 * addresses) are in HOST memory; the addresses in them are device pointers. The accumulator of
 * {@code sum_squares} (a float64) and the flag of {@code unscale_check} (an int32) are device
 * pointers. Work is queued on {@code stream}. Built without nvcc every call returns
 * CT_ERR_NOT_BUILT; messages come from {@link NativeCuda#ct_cuda_last_error()}.
 */
@Properties(value = @Platform(
        compiler = "cpp17",
        include = {"cortado/common.h", "cortado/optim.h"},
        link = "cortado_cuda"))
public final class NativeCudaOptim {
    static {
        Loader.load();
    }

    private NativeCudaOptim() {
    }

    public static void ensureLoaded() {
    }

    public static native int ct_cuda_optim_sgd(int paramDtype, int gradDtype, @Cast("int64_t") long n,
                                               @Cast("const int64_t*") long sizes, @Cast("const int64_t*") long params,
                                               @Cast("const int64_t*") long grads,
                                               @Cast("const int64_t*") long momentumBufs, double lr, double l2,
                                               double alpha, double beta, int nesterov, double gradScale,
                                               @Cast("int64_t") long stream);

    public static native int ct_cuda_optim_adam(int paramDtype, int gradDtype, @Cast("int64_t") long n,
                                                @Cast("const int64_t*") long sizes, @Cast("const int64_t*") long params,
                                                @Cast("const int64_t*") long grads, @Cast("const int64_t*") long expAvgs,
                                                @Cast("const int64_t*") long expAvgSqs,
                                                @Cast("const int64_t*") long maxExpAvgSqs, double beta1, double beta2,
                                                double eps, double l2, double decoupled, double stepSize,
                                                double denomScale, double postScale, double gradScale,
                                                @Cast("int64_t") long stream);

    public static native int ct_cuda_optim_adagrad(int paramDtype, int gradDtype, @Cast("int64_t") long n,
                                                   @Cast("const int64_t*") long sizes,
                                                   @Cast("const int64_t*") long params,
                                                   @Cast("const int64_t*") long grads, @Cast("const int64_t*") long sums,
                                                   double lr, double l2, double eps, double gradScale,
                                                   @Cast("int64_t") long stream);

    public static native int ct_cuda_optim_sum_squares(int dtype, @Cast("int64_t") long n,
                                                       @Cast("const int64_t*") long sizes,
                                                       @Cast("const int64_t*") long tensors,
                                                       @Cast("double*") long outDevice, @Cast("int64_t") long stream);

    public static native int ct_cuda_optim_scale(int dtype, @Cast("int64_t") long n, @Cast("const int64_t*") long sizes,
                                                 @Cast("const int64_t*") long tensors, double factor,
                                                 @Cast("int64_t") long stream);

    public static native int ct_cuda_optim_unscale_check(int dtype, @Cast("int64_t") long n,
                                                         @Cast("const int64_t*") long sizes,
                                                         @Cast("const int64_t*") long tensors, double invScale,
                                                         @Cast("int32_t*") long foundInfDevice,
                                                         @Cast("int64_t") long stream);
}
