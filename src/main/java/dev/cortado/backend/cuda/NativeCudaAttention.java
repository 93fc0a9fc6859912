package dev.cortado.backend.cuda;

import org.bytedeco.javacpp.Loader;
import org.bytedeco.javacpp.annotation.Cast;
import org.bytedeco.javacpp.annotation.Platform;
import org.bytedeco.javacpp.annotation.Properties;

/**
 * JavaCPP binding of the CUDA functions of {@code cortado/attention.h} in libcortado_cuda.so
 * (fused scaled-dot-product attention forward/backward and rotary embeddings; the stub answers
 * CT_ERR_NOT_BUILT when built without nvcc). Device pointers and streams cross as {@code long};
 * dims and stride arrays are host int64 arrays in {@link dev.cortado.backend.NativeArgs}; RoPE
 * positions are a device int64 array. Failures are read with {@link NativeCuda#ct_cuda_last_error()}
 * through {@link CudaBackend#failure}.
 */
@Properties(value = @Platform(
        compiler = "cpp17",
        include = {"cortado/common.h", "cortado/attention.h"},
        link = "cortado_cuda"))
public final class NativeCudaAttention {
    static {
        Loader.load();
    }

    private NativeCudaAttention() {
    }

    /** Forces class initialisation (library loading). */
    public static void ensureLoaded() {
    }

    public static native int ct_cuda_attention_forward(int dtype, @Cast("const int64_t*") long dims,
                                                       @Cast("const void*") long q, @Cast("const int64_t*") long qStrides,
                                                       @Cast("const void*") long k, @Cast("const int64_t*") long kStrides,
                                                       @Cast("const void*") long v, @Cast("const int64_t*") long vStrides,
                                                       int maskKind, @Cast("const void*") long mask,
                                                       @Cast("const int64_t*") long maskStrides, int causal,
                                                       double scale, double softcap, double dropoutP,
                                                       @Cast("uint64_t") long seed,
                                                       @Cast("uint64_t") long offset, @Cast("void*") long o,
                                                       @Cast("const int64_t*") long oStrides, @Cast("float*") long lse,
                                                       @Cast("int64_t") long stream);

    public static native int ct_cuda_attention_backward(int dtype, @Cast("const int64_t*") long dims,
                                                        @Cast("const void*") long q,
                                                        @Cast("const int64_t*") long qStrides,
                                                        @Cast("const void*") long k,
                                                        @Cast("const int64_t*") long kStrides,
                                                        @Cast("const void*") long v,
                                                        @Cast("const int64_t*") long vStrides, int maskKind,
                                                        @Cast("const void*") long mask,
                                                        @Cast("const int64_t*") long maskStrides, int causal,
                                                        double scale, double softcap, double dropoutP,
                                                        @Cast("uint64_t") long seed,
                                                        @Cast("uint64_t") long offset, @Cast("const void*") long o,
                                                        @Cast("const int64_t*") long oStrides,
                                                        @Cast("const void*") long dO,
                                                        @Cast("const int64_t*") long doStrides,
                                                        @Cast("const float*") long lse, @Cast("void*") long dq,
                                                        @Cast("const int64_t*") long dqStrides, @Cast("void*") long dk,
                                                        @Cast("const int64_t*") long dkStrides, @Cast("void*") long dv,
                                                        @Cast("const int64_t*") long dvStrides,
                                                        @Cast("int64_t") long stream);

    public static native int ct_cuda_rope(int dtype, @Cast("const int64_t*") long dims4, @Cast("void*") long x,
                                          @Cast("const int64_t*") long xStrides,
                                          @Cast("const int64_t*") long positions, @Cast("int64_t") long rotaryDim,
                                          double base, int interleaved, int inverse, @Cast("int64_t") long stream);
}
