package dev.cortado.backend.cpu;

import org.bytedeco.javacpp.Loader;
import org.bytedeco.javacpp.annotation.Cast;
import org.bytedeco.javacpp.annotation.Platform;
import org.bytedeco.javacpp.annotation.Properties;

/**
 * JavaCPP binding of the pooling functions of {@code cortado/pool.h} and the batch-norm
 * functions of {@code cortado/norm.h} in libcortado_cpu.so. Pointers cross as raw {@code long}
 * addresses; the geometry is the int64[25] array of {@code cortado/conv.h} (callers put it in
 * {@link dev.cortado.backend.NativeArgs}). Every function returns a status; failures are read
 * with {@link NativeCpu#ct_cpu_last_error()} through {@link CpuBackend#failure}.
 */
@Properties(value = @Platform(
        compiler = "cpp17",
        include = {"cortado/common.h", "cortado/pool.h", "cortado/norm.h"},
        link = "cortado_cpu",
        preload = {"cortado_env", "gomp@.1"}))
public final class NativePool {
    static {
        // libcortado_cpu.so needs libopenblas.so.0: load it first (see NativeCpu).
        Loader.load(org.bytedeco.openblas.global.openblas_nolapack.class);
        Loader.load();
    }

    private NativePool() {
    }

    /** Forces class initialisation (library loading). */
    public static void ensureLoaded() {
    }

    // ---------------------------------------------------------------- pool.h
    public static native int ct_cpu_maxpool_forward(int dtype, int layout, @Cast("const int64_t*") long g,
                                                    @Cast("const void*") long x, @Cast("void*") long y,
                                                    @Cast("int64_t*") long indices);

    public static native int ct_cpu_maxpool_backward(int dtype, int layout, @Cast("const int64_t*") long g,
                                                     @Cast("const void*") long dy,
                                                     @Cast("const int64_t*") long indices, @Cast("void*") long dx);

    public static native int ct_cpu_avgpool_forward(int dtype, int layout, @Cast("const int64_t*") long g,
                                                    int countIncludePad, @Cast("const void*") long x,
                                                    @Cast("void*") long y);

    public static native int ct_cpu_avgpool_backward(int dtype, int layout, @Cast("const int64_t*") long g,
                                                     int countIncludePad, @Cast("const void*") long dy,
                                                     @Cast("void*") long dx);

    public static native int ct_cpu_adaptive_avgpool_forward(int dtype, int layout, @Cast("const int64_t*") long g,
                                                             @Cast("const void*") long x, @Cast("void*") long y);

    public static native int ct_cpu_adaptive_avgpool_backward(int dtype, int layout, @Cast("const int64_t*") long g,
                                                              @Cast("const void*") long dy, @Cast("void*") long dx);

    // ---------------------------------------------------------------- norm.h (batch norm)
    public static native int ct_cpu_batchnorm_forward_training(int dtype, int layout, @Cast("int64_t") long n,
                                                               @Cast("int64_t") long c, @Cast("int64_t") long s,
                                                               @Cast("const void*") long x,
                                                               @Cast("const float*") long gamma,
                                                               @Cast("const float*") long beta, double eps,
                                                               double momentum, @Cast("float*") long runningMean,
                                                               @Cast("float*") long runningVar, @Cast("void*") long y,
                                                               @Cast("float*") long saveMean,
                                                               @Cast("float*") long saveRstd);

    public static native int ct_cpu_batchnorm_forward_inference(int dtype, int layout, @Cast("int64_t") long n,
                                                                @Cast("int64_t") long c, @Cast("int64_t") long s,
                                                                @Cast("const void*") long x,
                                                                @Cast("const float*") long gamma,
                                                                @Cast("const float*") long beta,
                                                                @Cast("const float*") long runningMean,
                                                                @Cast("const float*") long runningVar, double eps,
                                                                @Cast("void*") long y);

    public static native int ct_cpu_batchnorm_backward(int dtype, int layout, @Cast("int64_t") long n,
                                                       @Cast("int64_t") long c, @Cast("int64_t") long s,
                                                       @Cast("const void*") long x, @Cast("const void*") long dy,
                                                       @Cast("const float*") long gamma,
                                                       @Cast("const float*") long saveMean,
                                                       @Cast("const float*") long saveRstd, @Cast("void*") long dx,
                                                       @Cast("float*") long dgamma, @Cast("float*") long dbeta);
}
