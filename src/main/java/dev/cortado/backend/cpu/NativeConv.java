package dev.cortado.backend.cpu;

import org.bytedeco.javacpp.Loader;
import org.bytedeco.javacpp.annotation.Cast;
import org.bytedeco.javacpp.annotation.Platform;
import org.bytedeco.javacpp.annotation.Properties;

/**
 * JavaCPP binding of the convolution entry points of libcortado_cpu.so ({@code cortado/conv.h}).
 * The geometry is an int64[25] array in native memory ({@link dev.cortado.backend.NativeArgs});
 * data pointers are raw addresses of contiguous operands. Errors: a non-zero status, message in
 * {@link NativeCpu#ct_cpu_last_error()} ({@link CpuBackend#failure}).
 */
@Properties(value = @Platform(
        compiler = "cpp17",
        include = {"cortado/common.h", "cortado/conv.h"},
        link = "cortado_cpu",
        preload = {"cortado_env", "gomp@.1"}))
public final class NativeConv {
    static {
        Loader.load(org.bytedeco.openblas.global.openblas_nolapack.class);
        Loader.load();
    }

    private NativeConv() {
    }

    public static final int ALGO_AUTO = 0;
    public static final int ALGO_REFERENCE = 1;
    public static final int ALGO_IM2COL_GEMM = 2;
    public static final int ALGO_DIRECT_NHWC = 3;
    public static final int ALGO_WINOGRAD = 4;
    public static final int ALGO_DEPTHWISE = 5;

    /** Forces class initialisation (library loading). */
    public static void ensureLoaded() {
    }

    /** The algorithm AUTO runs for this pass (0 forward, 1 backward-data, 2 backward-weight); negative status on error. */
    public static native int ct_cpu_conv_choose(int dtype, int layout, @Cast("const int64_t*") long g, int pass);

    public static native int ct_cpu_conv_forward(int dtype, int layout, int algorithm, @Cast("const int64_t*") long g,
                                                 @Cast("const void*") long x, @Cast("const void*") long w,
                                                 @Cast("const void*") long bias, int activation, @Cast("void*") long y);

    public static native int ct_cpu_conv_backward_data(int dtype, int layout, int algorithm,
                                                       @Cast("const int64_t*") long g, @Cast("const void*") long dy,
                                                       @Cast("const void*") long w, @Cast("void*") long dx);

    public static native int ct_cpu_conv_backward_weight(int dtype, int layout, int algorithm,
                                                         @Cast("const int64_t*") long g, @Cast("const void*") long x,
                                                         @Cast("const void*") long dy, @Cast("void*") long dw,
                                                         @Cast("void*") long dbias);
}
