package dev.cortado.backend.cpu;

import org.bytedeco.javacpp.BytePointer;
import org.bytedeco.javacpp.Loader;
import org.bytedeco.javacpp.annotation.Cast;
import org.bytedeco.javacpp.annotation.Platform;
import org.bytedeco.javacpp.annotation.Properties;

/**
 * JavaCPP binding of libcortado_cpu.so: one Java method per {@code ct_cpu_*} function of the
 * headers in {@code native/include/cortado/}. Pointers cross as raw {@code long} addresses
 * (the callers check bounds before calling; the native side re-validates sizes and strides).
 * Every function returns a status; {@link dev.cortado.backend.NativeStatus} maps it to an
 * exception together with {@link #ct_cpu_last_error()}.
 */
@Properties(value = @Platform(
        compiler = "cpp17",
        include = {"cortado/common.h", "cortado/cpu.h", "cortado/elementwise.h", "cortado/reduce.h",
                   "cortado/norm.h", "cortado/index.h", "cortado/gemm.h", "cortado/random.h"},
        link = "cortado_cpu",
        preload = {"cortado_env", "gomp@.1"}))
public final class NativeCpu {
    static {
        // libcortado_cpu.so needs libopenblas.so.0: load it from the OpenBLAS preset jar first,
        // so the dynamic linker finds it by soname when our library is loaded.
        Loader.load(org.bytedeco.openblas.global.openblas_nolapack.class);
        Loader.load();
    }

    private NativeCpu() {
    }

    /** Forces class initialisation (library loading) and reports a failure as a LinkageError. */
    public static void ensureLoaded() {
    }

    // ---------------------------------------------------------------- runtime (cpu.h)
    public static native @Cast("const char*") BytePointer ct_cpu_last_error();

    public static native int ct_cpu_alloc(@Cast("int64_t") long bytes, @Cast("int64_t*") long[] outAddress);

    /** ct_cpu_alloc writing the address to native memory at {@code outSlot} (the fast path). */
    @org.bytedeco.javacpp.annotation.Name("ct_cpu_alloc")
    public static native int ct_cpu_alloc_into(@Cast("int64_t") long bytes, @Cast("int64_t*") long outSlot);

    public static native int ct_cpu_free(@Cast("int64_t") long address, @Cast("int64_t") long bytes);

    public static native @Cast("int64_t") long ct_cpu_allocated_bytes();

    public static native @Cast("int64_t") long ct_cpu_live_allocations();

    public static native @Cast("int64_t") long ct_cpu_cached_bytes();

    public static native int ct_cpu_empty_cache();

    public static native int ct_cpu_set_cache_limit(@Cast("int64_t") long bytes);

    public static native int ct_cpu_set_num_threads(int n);

    public static native int ct_cpu_get_num_threads();

    public static native int ct_cpu_blas_on_openmp();

    public static native @Cast("int64_t") long ct_cpu_blas_parallel_calls();

    public static native int ct_cpu_has_avx512();

    public static native int ct_cpu_set_avx512_enabled(int enabled);

    public static native int ct_cpu_memcpy(@Cast("int64_t") long dst, @Cast("int64_t") long src,
                                           @Cast("int64_t") long bytes);

    // ---------------------------------------------------------------- elementwise.h
    public static native int ct_cpu_unary(int op, int dtype, int ndim, @Cast("const int64_t*") long shape,
                                          @Cast("void*") long out, @Cast("const int64_t*") long outStrides,
                                          @Cast("const void*") long x, @Cast("const int64_t*") long xStrides,
                                          double p0, double p1);

    public static native int ct_cpu_binary(int op, int dtype, int ndim, @Cast("const int64_t*") long shape,
                                           @Cast("void*") long out, @Cast("const int64_t*") long outStrides,
                                           @Cast("const void*") long a, @Cast("const int64_t*") long aStrides,
                                           @Cast("const void*") long b, @Cast("const int64_t*") long bStrides);

    public static native int ct_cpu_where(int dtype, int ndim, @Cast("const int64_t*") long shape,
                                          @Cast("void*") long out, @Cast("const int64_t*") long outStrides,
                                          @Cast("const uint8_t*") long cond, @Cast("const int64_t*") long condStrides,
                                          @Cast("const void*") long a, @Cast("const int64_t*") long aStrides,
                                          @Cast("const void*") long b, @Cast("const int64_t*") long bStrides);

    public static native int ct_cpu_copy(int dstDtype, int srcDtype, int ndim, @Cast("const int64_t*") long shape,
                                         @Cast("void*") long dst, @Cast("const int64_t*") long dstStrides,
                                         @Cast("const void*") long src, @Cast("const int64_t*") long srcStrides);

    public static native int ct_cpu_fill(int dtype, @Cast("int64_t") long n, @Cast("void*") long out, double value);

    public static native int ct_cpu_int4_unpack(@Cast("int64_t") long n, @Cast("const uint8_t*") long packed,
                                                @Cast("int8_t*") long out);

    public static native int ct_cpu_int4_pack(@Cast("int64_t") long n, @Cast("const int8_t*") long in,
                                              @Cast("uint8_t*") long packed);

    // ---------------------------------------------------------------- reduce.h
    public static native int ct_cpu_reduce(int op, int dtype, int outDtype,
                                           int outerNdim, @Cast("const int64_t*") long outerShape,
                                           @Cast("const int64_t*") long inOuterStrides,
                                           @Cast("const int64_t*") long outStrides,
                                           int innerNdim, @Cast("const int64_t*") long innerShape,
                                           @Cast("const int64_t*") long inInnerStrides,
                                           @Cast("const void*") long in, @Cast("void*") long out, double param);

    // ---------------------------------------------------------------- norm.h
    public static native int ct_cpu_softmax(int dtype, int log, @Cast("int64_t") long outer,
                                            @Cast("int64_t") long dim, @Cast("int64_t") long inner,
                                            @Cast("const void*") long x, @Cast("void*") long y);

    public static native int ct_cpu_layernorm(int dtype, @Cast("int64_t") long rows, @Cast("int64_t") long cols,
                                              @Cast("const void*") long x, @Cast("const void*") long gamma,
                                              @Cast("const void*") long beta, double eps, @Cast("void*") long y,
                                              @Cast("float*") long meanOut, @Cast("float*") long rstdOut);

    public static native int ct_cpu_rmsnorm(int dtype, @Cast("int64_t") long rows, @Cast("int64_t") long cols,
                                            @Cast("const void*") long x, @Cast("const void*") long gamma,
                                            double eps, @Cast("void*") long y, @Cast("float*") long rstdOut);

    // ---------------------------------------------------------------- norm.h (backward)
    public static native int ct_cpu_softmax_backward(int dtype, int log, @Cast("int64_t") long outer,
                                                     @Cast("int64_t") long dim, @Cast("int64_t") long inner,
                                                     @Cast("const void*") long y, @Cast("const void*") long dy,
                                                     @Cast("void*") long dx);

    public static native int ct_cpu_layernorm_backward(int dtype, @Cast("int64_t") long rows, @Cast("int64_t") long cols,
                                                       @Cast("const void*") long x, @Cast("const void*") long gamma,
                                                       double eps, @Cast("const void*") long dy, @Cast("void*") long dx,
                                                       @Cast("void*") long dgamma, @Cast("void*") long dbeta);

    public static native int ct_cpu_rmsnorm_backward(int dtype, @Cast("int64_t") long rows, @Cast("int64_t") long cols,
                                                     @Cast("const void*") long x, @Cast("const void*") long gamma,
                                                     double eps, @Cast("const void*") long dy, @Cast("void*") long dx,
                                                     @Cast("void*") long dgamma);

    // ---------------------------------------------------------------- index.h (index_add)
    public static native int ct_cpu_index_add(int dtype, int indexDtype, @Cast("int64_t") long outer,
                                              @Cast("int64_t") long axisLen, @Cast("int64_t") long inner,
                                              @Cast("int64_t") long nIndex, @Cast("const void*") long index,
                                              @Cast("const void*") long src, @Cast("void*") long out);

    // ---------------------------------------------------------------- index.h
    public static native int ct_cpu_gather(int dtype, int indexDtype, @Cast("int64_t") long outer,
                                           @Cast("int64_t") long axisLen, @Cast("int64_t") long inner,
                                           @Cast("const void*") long src, @Cast("int64_t") long nIndex,
                                           @Cast("const void*") long index, @Cast("void*") long out);

    // ---------------------------------------------------------------- gemm.h
    public static native int ct_cpu_gemm(int dtype, int transA, int transB, @Cast("int64_t") long batch,
                                         @Cast("int64_t") long m, @Cast("int64_t") long n, @Cast("int64_t") long k,
                                         double alpha,
                                         @Cast("const void*") long a, @Cast("int64_t") long lda,
                                         @Cast("int64_t") long batchStrideA,
                                         @Cast("const void*") long b, @Cast("int64_t") long ldb,
                                         @Cast("int64_t") long batchStrideB,
                                         double beta, @Cast("void*") long c, @Cast("int64_t") long ldc,
                                         @Cast("int64_t") long batchStrideC);

    // ---------------------------------------------------------------- random.h
    public static native int ct_cpu_random(int distribution, int dtype, @Cast("int64_t") long n,
                                           @Cast("void*") long out, @Cast("uint64_t") long seed,
                                           @Cast("uint64_t") long offset, double a, double b);
}
