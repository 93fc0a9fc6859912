package dev.cortado.backend.cpu;

import org.bytedeco.javacpp.Loader;
import org.bytedeco.javacpp.annotation.Cast;
import org.bytedeco.javacpp.annotation.Platform;
import org.bytedeco.javacpp.annotation.Properties;

/**
 * JavaCPP binding of the CPU half of {@code cortado/kvcache.h} in libcortado_cpu.so: the paged
 * KV-cache append and split-K paged decode attention. Pointers cross as raw {@code long}
 * addresses; dims and stride arrays are int64 arrays put in {@link dev.cortado.backend.NativeArgs}.
 * Every function returns a status; failures are read through {@link CpuBackend#failure}.
 */
@Properties(value = @Platform(
        compiler = "cpp17",
        include = {"cortado/common.h", "cortado/kvcache.h"},
        link = "cortado_cpu",
        preload = {"cortado_env", "gomp@.1"}))
public final class NativeKvCache {
    static {
        // libcortado_cpu.so needs libopenblas.so.0: load it first (see NativeCpu).
        Loader.load(org.bytedeco.openblas.global.openblas_nolapack.class);
        Loader.load();
    }

    private NativeKvCache() {
    }

    /** Forces class initialisation (library loading). */
    public static void ensureLoaded() {
    }

    public static native int ct_cpu_kv_cache_append(int dtype, @Cast("const int64_t*") long dims,
                                                    @Cast("const void*") long kNew, @Cast("const int64_t*") long kNewStrides,
                                                    @Cast("const void*") long vNew, @Cast("const int64_t*") long vNewStrides,
                                                    @Cast("void*") long kCache, @Cast("void*") long vCache,
                                                    @Cast("const int32_t*") long blockTable,
                                                    @Cast("const int32_t*") long seqLens,
                                                    @Cast("const int32_t*") long newLens);

    public static native int ct_cpu_paged_decode_attention(int dtype, @Cast("const int64_t*") long dims,
                                                           @Cast("const void*") long q, @Cast("const int64_t*") long qStrides,
                                                           @Cast("const void*") long kCache, @Cast("const void*") long vCache,
                                                           @Cast("const int32_t*") long blockTable,
                                                           @Cast("const int32_t*") long seqLens, int causal, double scale,
                                                           double softcap,
                                                           @Cast("int64_t") long numSplits, @Cast("void*") long o,
                                                           @Cast("const int64_t*") long oStrides, @Cast("float*") long lse);

    public static native @Cast("int64_t") long ct_cpu_paged_decode_auto_splits(@Cast("int64_t") long s,
                                                                               @Cast("int64_t") long hkv,
                                                                               @Cast("int64_t") long maxLen,
                                                                               @Cast("int64_t") long pageSize);
}
