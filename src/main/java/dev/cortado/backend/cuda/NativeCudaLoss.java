package dev.cortado.backend.cuda;

import org.bytedeco.javacpp.Loader;
import org.bytedeco.javacpp.annotation.Cast;
import org.bytedeco.javacpp.annotation.Platform;
import org.bytedeco.javacpp.annotation.Properties;

/**
 * JavaCPP binding of the CUDA functions of {@code cortado/loss.h} in libcortado_cuda.so (the stub
 * answers CT_ERR_NOT_BUILT when built without nvcc). Device pointers and streams cross as
 * {@code long}; failures are read with {@link NativeCuda#ct_cuda_last_error()} through
 * {@link CudaBackend#failure}.
 */
@Properties(value = @Platform(
        compiler = "cpp17",
        include = {"cortado/common.h", "cortado/loss.h"},
        link = "cortado_cuda"))
public final class NativeCudaLoss {
    static {
        Loader.load();
    }

    private NativeCudaLoss() {
    }

    public static void ensureLoaded() {
    }

    public static native int ct_cuda_cross_entropy_forward(int dtype, int targetDtype, @Cast("int64_t") long rows,
                                                           @Cast("int64_t") long classes,
                                                           @Cast("const void*") long logits,
                                                           @Cast("const void*") long target,
                                                           @Cast("int64_t") long ignoreIndex, double smoothing,
                                                           int reduction, @Cast("void*") long loss,
                                                           @Cast("void*") long lseOut, @Cast("int64_t") long stream);

    public static native int ct_cuda_cross_entropy_backward(int dtype, int targetDtype, @Cast("int64_t") long rows,
                                                            @Cast("int64_t") long classes,
                                                            @Cast("const void*") long logits,
                                                            @Cast("const void*") long target,
                                                            @Cast("const void*") long lse,
                                                            @Cast("const void*") long grad,
                                                            @Cast("int64_t") long ignoreIndex, double smoothing,
                                                            int reduction, @Cast("void*") long dlogits,
                                                            @Cast("int64_t") long stream);
}
