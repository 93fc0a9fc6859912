package dev.cortado.backend.cuda;

import org.bytedeco.javacpp.Loader;
import org.bytedeco.javacpp.annotation.Cast;
import org.bytedeco.javacpp.annotation.Platform;
import org.bytedeco.javacpp.annotation.Properties;

/**
 * JavaCPP binding of the CUDA pooling functions of {@code cortado/pool.h} and the CUDA batch-norm
 * functions of {@code cortado/norm.h} in libcortado_cuda.so (the stub answers CT_ERR_NOT_BUILT
 * when built without nvcc). Device pointers and streams cross as {@code long}; the geometry is the
 * HOST int64[25] array of {@code cortado/conv.h} (in {@link dev.cortado.backend.NativeArgs}).
 * Failures are read with {@link NativeCuda#ct_cuda_last_error()} through {@link CudaBackend#failure}.
 */
@Properties(value = @Platform(
        compiler = "cpp17",
        include = {"cortado/common.h", "cortado/pool.h", "cortado/norm.h"},
        link = "cortado_cuda"))
public final class NativeCudaPool {
    static {
        Loader.load();
    }

    private NativeCudaPool() {
    }

    public static void ensureLoaded() {
    }

    // ---------------------------------------------------------------- pool.h
    public static native int ct_cuda_maxpool_forward(int dtype, int layout, @Cast("const int64_t*") long g,
                                                     @Cast("const void*") long x, @Cast("void*") long y,
                                                     @Cast("int64_t*") long indices, @Cast("int64_t") long stream);

    public static native int ct_cuda_maxpool_backward(int dtype, int layout, @Cast("const int64_t*") long g,
                                                      @Cast("const void*") long dy,
                                                      @Cast("const int64_t*") long indices, @Cast("void*") long dx,
                                                      @Cast("int64_t") long stream);

    public static native int ct_cuda_avgpool_forward(int dtype, int layout, @Cast("const int64_t*") long g,
                                                     int countIncludePad, @Cast("const void*") long x,
                                                     @Cast("void*") long y, @Cast("int64_t") long stream);

    public static native int ct_cuda_avgpool_backward(int dtype, int layout, @Cast("const int64_t*") long g,
                                                      int countIncludePad, @Cast("const void*") long dy,
                                                      @Cast("void*") long dx, @Cast("int64_t") long stream);

    public static native int ct_cuda_adaptive_avgpool_forward(int dtype, int layout, @Cast("const int64_t*") long g,
                                                              @Cast("const void*") long x, @Cast("void*") long y,
                                                              @Cast("int64_t") long stream);

    public static native int ct_cuda_adaptive_avgpool_backward(int dtype, int layout, @Cast("const int64_t*") long g,
                                                               @Cast("const void*") long dy, @Cast("void*") long dx,
                                                               @Cast("int64_t") long stream);

    // ---------------------------------------------------------------- norm.h (batch norm)
    public static native int ct_cuda_batchnorm_forward_training(int dtype, int layout, @Cast("int64_t") long n,
                                                                @Cast("int64_t") long c, @Cast("int64_t") long s,
                                                                @Cast("const void*") long x,
                                                                @Cast("const float*") long gamma,
                                                                @Cast("const float*") long beta, double eps,
                                                                double momentum, @Cast("float*") long runningMean,
                                                                @Cast("float*") long runningVar, @Cast("void*") long y,
                                                                @Cast("float*") long saveMean,
                                                                @Cast("float*") long saveRstd,
                                                                @Cast("int64_t") long stream);

    public static native int ct_cuda_batchnorm_forward_inference(int dtype, int layout, @Cast("int64_t") long n,
                                                                 @Cast("int64_t") long c, @Cast("int64_t") long s,
                                                                 @Cast("const void*") long x,
                                                                 @Cast("const float*") long gamma,
                                                                 @Cast("const float*") long beta,
                                                                 @Cast("const float*") long runningMean,
                                                                 @Cast("const float*") long runningVar, double eps,
                                                                 @Cast("void*") long y, @Cast("int64_t") long stream);

    public static native int ct_cuda_batchnorm_backward(int dtype, int layout, @Cast("int64_t") long n,
                                                        @Cast("int64_t") long c, @Cast("int64_t") long s,
                                                        @Cast("const void*") long x, @Cast("const void*") long dy,
                                                        @Cast("const float*") long gamma,
                                                        @Cast("const float*") long saveMean,
                                                        @Cast("const float*") long saveRstd, @Cast("void*") long dx,
                                                        @Cast("float*") long dgamma, @Cast("float*") long dbeta,
                                                        @Cast("int64_t") long stream);
}
