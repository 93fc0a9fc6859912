package dev.cortado.backend.cuda;

import org.bytedeco.javacpp.Loader;
import org.bytedeco.javacpp.annotation.Cast;
import org.bytedeco.javacpp.annotation.Platform;
import org.bytedeco.javacpp.annotation.Properties;

/**
 * JavaCPP binding of the CUDA convolution entry points of {@code cortado/conv.h} in
 * libcortado_cuda.so (native/cuda/conv.cu; the stub answers CT_ERR_NOT_BUILT when built without
 * nvcc). The geometry is the same int64[25] array as the CPU's ({@link dev.cortado.backend.NativeArgs});
 * device pointers and the stream cross as {@code long}. Workspace is allocated on the stream inside
 * the call. Failures are read with {@link NativeCuda#ct_cuda_last_error()} through {@link CudaBackend#failure}.
 */
@Properties(value = @Platform(
        compiler = "cpp17",
        include = {"cortado/common.h", "cortado/conv.h"},
        link = "cortado_cuda"))
public final class NativeCudaConv {
    static {
        Loader.load();
    }

    private NativeCudaConv() {
    }

    /** CT_CONV_ALGO_IMPLICIT_GEMM: tensor-core implicit GEMM (CUDA). */
    public static final int ALGO_IMPLICIT_GEMM = 6;

    public static void ensureLoaded() {
    }

    public static native int ct_cuda_conv_forward(int dtype, int layout, int algorithm, @Cast("const int64_t*") long g,
                                                  @Cast("const void*") long x, @Cast("const void*") long w,
                                                  @Cast("const void*") long bias, int activation, @Cast("void*") long y,
                                                  @Cast("int64_t") long stream);

    public static native int ct_cuda_conv_backward_data(int dtype, int layout, int algorithm,
                                                        @Cast("const int64_t*") long g, @Cast("const void*") long dy,
                                                        @Cast("const void*") long w, @Cast("void*") long dx,
                                                        @Cast("int64_t") long stream);

    public static native int ct_cuda_conv_backward_weight(int dtype, int layout, int algorithm,
                                                          @Cast("const int64_t*") long g, @Cast("const void*") long x,
                                                          @Cast("const void*") long dy, @Cast("void*") long dw,
                                                          @Cast("void*") long dbias, @Cast("int64_t") long stream);
}
