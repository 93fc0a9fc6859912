package dev.cortado.backend.cpu;

import org.bytedeco.javacpp.Loader;
import org.bytedeco.javacpp.annotation.Cast;
import org.bytedeco.javacpp.annotation.Platform;
import org.bytedeco.javacpp.annotation.Properties;

/**
 * JavaCPP binding of {@code cortado/attention.h} in libcortado_cpu.so: fused scaled-dot-product
 * attention (forward, backward) and rotary embeddings. Pointers cross as raw {@code long}
 * addresses; dims and the 4-element stride arrays are int64 arrays that callers put in
 * {@link dev.cortado.backend.NativeArgs}. Every function returns a status; failures are read with
 * {@link NativeCpu#ct_cpu_last_error()} through {@link CpuBackend#failure}.
 */
@Properties(value = @Platform(
        compiler = "cpp17",
        include = {"cortado/common.h", "cortado/attention.h"},
        link = "cortado_cpu",
        preload = {"cortado_env", "gomp@.1"}))
public final class NativeAttention {
    static {
        // libcortado_cpu.so needs libopenblas.so.0: load it first (see NativeCpu).
        Loader.load(org.bytedeco.openblas.global.openblas_nolapack.class);
        Loader.load();
    }

    private NativeAttention() {
    }

    /** Forces class initialisation (library loading). */
    public static void ensureLoaded() {
    }

    public static native int ct_cpu_attention_forward(int dtype, @Cast("const int64_t*") long dims,
                                                      @Cast("const void*") long q, @Cast("const int64_t*") long qStrides,
                                                      @Cast("const void*") long k, @Cast("const int64_t*") long kStrides,
                                                      @Cast("const void*") long v, @Cast("const int64_t*") long vStrides,
                                                      int maskKind, @Cast("const void*") long mask,
                                                      @Cast("const int64_t*") long maskStrides, int causal, double scale,
                                                      double softcap, double dropoutP, @Cast("uint64_t") long seed,
                                                      @Cast("uint64_t") long offset, @Cast("void*") long o,
                                                      @Cast("const int64_t*") long oStrides, @Cast("float*") long lse);

    public static native int ct_cpu_attention_backward(int dtype, @Cast("const int64_t*") long dims,
                                                       @Cast("const void*") long q, @Cast("const int64_t*") long qStrides,
                                                       @Cast("const void*") long k, @Cast("const int64_t*") long kStrides,
                                                       @Cast("const void*") long v, @Cast("const int64_t*") long vStrides,
                                                       int maskKind, @Cast("const void*") long mask,
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
                                                       @Cast("const int64_t*") long dvStrides);

    public static native int ct_cpu_rope(int dtype, @Cast("const int64_t*") long dims4, @Cast("void*") long x,
                                         @Cast("const int64_t*") long xStrides,
                                         @Cast("const int64_t*") long positions, @Cast("int64_t") long rotaryDim,
                                         double base, int interleaved, int inverse);
}
