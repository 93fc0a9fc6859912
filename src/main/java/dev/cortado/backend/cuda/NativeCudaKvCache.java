package dev.cortado.backend.cuda;

import org.bytedeco.javacpp.Loader;
import org.bytedeco.javacpp.annotation.Cast;
import org.bytedeco.javacpp.annotation.Platform;
import org.bytedeco.javacpp.annotation.Properties;

/**
 * JavaCPP binding of the CUDA half of {@code cortado/kvcache.h} in libcortado_cuda.so (the stub
 * answers CT_ERR_NOT_BUILT when the library was built without nvcc). Device pointers and the
 * stream cross as {@code long}; dims and strides are host int64 arrays in
 * {@link dev.cortado.backend.NativeArgs}; block_table, seq_lens and new_lens are device pointers.
 * Errors are read with {@link NativeCuda#ct_cuda_last_error()} through {@link CudaBackend#failure}.
 */
@Properties(value = @Platform(
        compiler = "cpp17",
        include = {"cortado/common.h", "cortado/kvcache.h"},
        link = "cortado_cuda"))
public final class NativeCudaKvCache {
    static {
        Loader.load();
    }

    private NativeCudaKvCache() {
    }

    public static void ensureLoaded() {
    }

    public static native int ct_cuda_kv_cache_append(int dtype, @Cast("const int64_t*") long dims,
                                                     @Cast("const void*") long kNew, @Cast("const int64_t*") long kNewStrides,
                                                     @Cast("const void*") long vNew, @Cast("const int64_t*") long vNewStrides,
                                                     @Cast("void*") long kCache, @Cast("void*") long vCache,
                                                     @Cast("const int32_t*") long blockTable,
                                                     @Cast("const int32_t*") long seqLens,
                                                     @Cast("const int32_t*") long newLens, @Cast("int64_t") long stream);

    public static native int ct_cuda_paged_decode_attention(int dtype, @Cast("const int64_t*") long dims,
                                                            @Cast("const void*") long q,
                                                            @Cast("const int64_t*") long qStrides,
                                                            @Cast("const void*") long kCache,
                                                            @Cast("const void*") long vCache,
                                                            @Cast("const int32_t*") long blockTable,
                                                            @Cast("const int32_t*") long seqLens,
                                                            @Cast("int64_t") long maxLen, int causal, double scale,
                                                            double softcap,
                                                            @Cast("int64_t") long numSplits, @Cast("void*") long o,
                                                            @Cast("const int64_t*") long oStrides,
                                                            @Cast("float*") long lse, @Cast("float*") long workspace,
                                                            @Cast("int64_t") long workspaceFloats,
                                                            @Cast("int64_t") long stream);
}
