package dev.cortado.backend.cpu;

import org.bytedeco.javacpp.Loader;
import org.bytedeco.javacpp.annotation.Cast;
import org.bytedeco.javacpp.annotation.Platform;
import org.bytedeco.javacpp.annotation.Properties;

/**
 * JavaCPP binding of the optimizer entry points of libcortado_cpu.so ({@code cortado/optim.h}):
 * fused SGD/momentum, Adam/AdamW and Adagrad updates over many tensors per call, and the
 * gradient utilities (sum of squares, scale, unscale-and-check). Tables ({@code sizes},
 * {@code params}, {@code grads}, states) are addresses of int64 arrays in native memory, each
 * entry the address of a contiguous tensor's first element; an unused state table is 0.
 * Errors: a non-zero status, message in {@link NativeCpu#ct_cpu_last_error()}
 * ({@link CpuBackend#failure}). Used by {@code dev.cortado.optim}.
 */
@Properties(value = @Platform(
        compiler = "cpp17",
        include = {"cortado/common.h", "cortado/optim.h"},
        link = "cortado_cpu",
        preload = {"cortado_env", "gomp@.1"}))
public final class NativeOptim {
    static {
        Loader.load(org.bytedeco.openblas.global.openblas_nolapack.class);
        Loader.load();
    }

    private NativeOptim() {
    }

    /** Forces class initialisation (library loading). */
    public static void ensureLoaded() {
    }

    public static native int ct_cpu_optim_sgd(int paramDtype, int gradDtype, @Cast("int64_t") long n,
                                              @Cast("const int64_t*") long sizes, @Cast("const int64_t*") long params,
                                              @Cast("const int64_t*") long grads,
                                              @Cast("const int64_t*") long momentumBufs, double lr, double l2,
                                              double alpha, double beta, int nesterov, double gradScale);

    public static native int ct_cpu_optim_adam(int paramDtype, int gradDtype, @Cast("int64_t") long n,
                                               @Cast("const int64_t*") long sizes, @Cast("const int64_t*") long params,
                                               @Cast("const int64_t*") long grads, @Cast("const int64_t*") long expAvgs,
                                               @Cast("const int64_t*") long expAvgSqs,
                                               @Cast("const int64_t*") long maxExpAvgSqs, double beta1, double beta2,
                                               double eps, double l2, double decoupled, double stepSize,
                                               double denomScale, double postScale, double gradScale);

    public static native int ct_cpu_optim_adagrad(int paramDtype, int gradDtype, @Cast("int64_t") long n,
                                                  @Cast("const int64_t*") long sizes,
                                                  @Cast("const int64_t*") long params,
                                                  @Cast("const int64_t*") long grads, @Cast("const int64_t*") long sums,
                                                  double lr, double l2, double eps, double gradScale);

    /** out[0] = sum of squares of all elements (float64 accumulation). */
    public static native int ct_cpu_optim_sum_squares(int dtype, @Cast("int64_t") long n,
                                                      @Cast("const int64_t*") long sizes,
                                                      @Cast("const int64_t*") long tensors, double[] out);

    public static native int ct_cpu_optim_scale(int dtype, @Cast("int64_t") long n, @Cast("const int64_t*") long sizes,
                                                @Cast("const int64_t*") long tensors, double factor);

    /** Scales in place; sets foundInf[0] = 1 when a scaled element is inf or NaN (else leaves it). */
    public static native int ct_cpu_optim_unscale_check(int dtype, @Cast("int64_t") long n,
                                                        @Cast("const int64_t*") long sizes,
                                                        @Cast("const int64_t*") long tensors, double invScale,
                                                        @Cast("int32_t*") int[] foundInf);
}
