package dev.cortado.backend.cpu;

import org.bytedeco.javacpp.Loader;
import org.bytedeco.javacpp.annotation.Cast;
import org.bytedeco.javacpp.annotation.Platform;
import org.bytedeco.javacpp.annotation.Properties;

/**
 * JavaCPP binding of the CPU functions of {@code cortado/loss.h} (fused softmax cross-entropy)
 * in libcortado_cpu.so. Pointers cross as raw {@code long} addresses; every function returns a
 * status, read with {@link NativeCpu#ct_cpu_last_error()} through {@link CpuBackend#failure}.
 */
@Properties(value = @Platform(
        compiler = "cpp17",
        include = {"cortado/common.h", "cortado/loss.h"},
        link = "cortado_cpu",
        preload = {"cortado_env", "gomp@.1"}))
public final class NativeLoss {
    static {
        // libcortado_cpu.so needs libopenblas.so.0: load it first (see NativeCpu).
        Loader.load(org.bytedeco.openblas.global.openblas_nolapack.class);
        Loader.load();
    }

    /** Reductions of loss.h (CT_REDUCE_*). */
    public static final int REDUCE_NONE = 0;
    public static final int REDUCE_MEAN = 1;
    public static final int REDUCE_SUM = 2;

    private NativeLoss() {
    }

    /** Forces class initialisation (library loading). */
    public static void ensureLoaded() {
    }

    public static native int ct_cpu_cross_entropy_forward(int dtype, int targetDtype, @Cast("int64_t") long rows,
                                                          @Cast("int64_t") long classes, @Cast("const void*") long logits,
                                                          @Cast("const void*") long target,
                                                          @Cast("int64_t") long ignoreIndex, double smoothing,
                                                          int reduction, @Cast("void*") long loss,
                                                          @Cast("void*") long lseOut);

    public static native int ct_cpu_cross_entropy_backward(int dtype, int targetDtype, @Cast("int64_t") long rows,
                                                           @Cast("int64_t") long classes,
                                                           @Cast("const void*") long logits,
                                                           @Cast("const void*") long target,
                                                           @Cast("const void*") long lse,
                                                           @Cast("const void*") long grad,
                                                           @Cast("int64_t") long ignoreIndex, double smoothing,
                                                           int reduction, @Cast("void*") long dlogits);
}
