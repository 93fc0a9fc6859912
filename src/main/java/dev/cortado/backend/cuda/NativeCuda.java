package dev.cortado.backend.cuda;

import org.bytedeco.javacpp.BytePointer;
import org.bytedeco.javacpp.Loader;
import org.bytedeco.javacpp.annotation.Cast;
import org.bytedeco.javacpp.annotation.Platform;
import org.bytedeco.javacpp.annotation.Properties;

/**
 * JavaCPP binding of libcortado_cuda.so: one Java method per {@code ct_cuda_*} function. The
 * library links the CUDA runtime statically, so loading it needs no CUDA installation; without a
 * driver its calls return CT_ERR_CUDA, and when built without nvcc, CT_ERR_NOT_BUILT.
 * Device pointers, streams and events cross as {@code long} handles.
 */
@Properties(value = @Platform(
        compiler = "cpp17",
        include = {"cortado/common.h", "cortado/cuda.h", "cortado/elementwise.h", "cortado/reduce.h",
                   "cortado/norm.h", "cortado/index.h", "cortado/random.h"},
        link = "cortado_cuda"))
public final class NativeCuda {
    static {
        Loader.load();
    }

    private NativeCuda() {
    }

    public static void ensureLoaded() {
    }

    // ---------------------------------------------------------------- runtime (cuda.h)
    public static native @Cast("const char*") BytePointer ct_cuda_last_error();

    public static native int ct_cuda_built();

    public static native int ct_cuda_runtime_version(int[] version);

    public static native int ct_cuda_driver_version(int[] version);

    public static native int ct_cuda_device_count(int[] count);

    public static native int ct_cuda_device_info(int device, @Cast("char*") byte[] name, int nameCapacity,
                                                 @Cast("int64_t*") long[] info);

    public static native int ct_cuda_set_device(int device);

    public static native int ct_cuda_get_device(int[] device);

    public static native int ct_cuda_device_synchronize();

    public static native int ct_cuda_mem_info(@Cast("int64_t*") long[] freeBytes, @Cast("int64_t*") long[] totalBytes);

    public static native int ct_cuda_malloc(@Cast("int64_t") long bytes, @Cast("int64_t*") long[] outAddress);

    public static native int ct_cuda_free(@Cast("int64_t") long address);

    public static native int ct_cuda_malloc_host(@Cast("int64_t") long bytes, @Cast("int64_t*") long[] outAddress);

    public static native int ct_cuda_free_host(@Cast("int64_t") long address);

    public static native int ct_cuda_memcpy(@Cast("int64_t") long dst, @Cast("int64_t") long src,
                                            @Cast("int64_t") long bytes, int kind, @Cast("int64_t") long stream);

    public static native int ct_cuda_memset(@Cast("int64_t") long dst, int value, @Cast("int64_t") long bytes,
                                            @Cast("int64_t") long stream);

    public static native int ct_cuda_stream_create(@Cast("int64_t*") long[] outStream);

    public static native int ct_cuda_stream_destroy(@Cast("int64_t") long stream);

    public static native int ct_cuda_stream_synchronize(@Cast("int64_t") long stream);

    public static native int ct_cuda_stream_wait_event(@Cast("int64_t") long stream, @Cast("int64_t") long event);

    public static native int ct_cuda_event_create(@Cast("int64_t*") long[] outEvent);

    public static native int ct_cuda_event_destroy(@Cast("int64_t") long event);

    public static native int ct_cuda_event_record(@Cast("int64_t") long event, @Cast("int64_t") long stream);

    public static native int ct_cuda_event_synchronize(@Cast("int64_t") long event);

    public static native int ct_cuda_event_elapsed_ms(@Cast("int64_t") long start, @Cast("int64_t") long end,
                                                      float[] ms);

    // ---------------------------------------------------------------- elementwise.h
    public static native int ct_cuda_unary(int op, int dtype, int ndim, @Cast("const int64_t*") long shape,
                                           @Cast("void*") long out, @Cast("const int64_t*") long outStrides,
                                           @Cast("const void*") long x, @Cast("const int64_t*") long xStrides,
                                           double p0, double p1, @Cast("int64_t") long stream);

    public static native int ct_cuda_binary(int op, int dtype, int ndim, @Cast("const int64_t*") long shape,
                                            @Cast("void*") long out, @Cast("const int64_t*") long outStrides,
                                            @Cast("const void*") long a, @Cast("const int64_t*") long aStrides,
                                            @Cast("const void*") long b, @Cast("const int64_t*") long bStrides,
                                            @Cast("int64_t") long stream);

    public static native int ct_cuda_where(int dtype, int ndim, @Cast("const int64_t*") long shape,
                                           @Cast("void*") long out, @Cast("const int64_t*") long outStrides,
                                           @Cast("const uint8_t*") long cond, @Cast("const int64_t*") long condStrides,
                                           @Cast("const void*") long a, @Cast("const int64_t*") long aStrides,
                                           @Cast("const void*") long b, @Cast("const int64_t*") long bStrides,
                                           @Cast("int64_t") long stream);

    public static native int ct_cuda_copy(int dstDtype, int srcDtype, int ndim, @Cast("const int64_t*") long shape,
                                          @Cast("void*") long dst, @Cast("const int64_t*") long dstStrides,
                                          @Cast("const void*") long src, @Cast("const int64_t*") long srcStrides,
                                          @Cast("int64_t") long stream);

    public static native int ct_cuda_fill(int dtype, @Cast("int64_t") long n, @Cast("void*") long out, double value,
                                          @Cast("int64_t") long stream);

    public static native int ct_cuda_int4_unpack(@Cast("int64_t") long n, @Cast("const uint8_t*") long packed,
                                                 @Cast("int8_t*") long out, @Cast("int64_t") long stream);

    public static native int ct_cuda_int4_pack(@Cast("int64_t") long n, @Cast("const int8_t*") long in,
                                               @Cast("uint8_t*") long packed, @Cast("int64_t") long stream);

    // ---------------------------------------------------------------- reduce.h
    public static native int ct_cuda_reduce(int op, int dtype, int outDtype,
                                            int outerNdim, @Cast("const int64_t*") long outerShape,
                                            @Cast("const int64_t*") long inOuterStrides,
                                            @Cast("const int64_t*") long outStrides,
                                            int innerNdim, @Cast("const int64_t*") long innerShape,
                                            @Cast("const int64_t*") long inInnerStrides,
                                            @Cast("const void*") long in, @Cast("void*") long out, double param,
                                            @Cast("int64_t") long stream);

    // ---------------------------------------------------------------- norm.h
    public static native int ct_cuda_softmax(int dtype, int log, @Cast("int64_t") long outer,
                                             @Cast("int64_t") long dim, @Cast("int64_t") long inner,
                                             @Cast("const void*") long x, @Cast("void*") long y,
                                             @Cast("int64_t") long stream);

    public static native int ct_cuda_layernorm(int dtype, @Cast("int64_t") long rows, @Cast("int64_t") long cols,
                                               @Cast("const void*") long x, @Cast("const void*") long gamma,
                                               @Cast("const void*") long beta, double eps, @Cast("void*") long y,
                                               @Cast("float*") long meanOut, @Cast("float*") long rstdOut,
                                               @Cast("int64_t") long stream);

    public static native int ct_cuda_rmsnorm(int dtype, @Cast("int64_t") long rows, @Cast("int64_t") long cols,
                                             @Cast("const void*") long x, @Cast("const void*") long gamma,
                                             double eps, @Cast("void*") long y, @Cast("float*") long rstdOut,
                                             @Cast("int64_t") long stream);

    // ---------------------------------------------------------------- index.h
    public static native int ct_cuda_gather(int dtype, int indexDtype, @Cast("int64_t") long outer,
                                            @Cast("int64_t") long axisLen, @Cast("int64_t") long inner,
                                            @Cast("const void*") long src, @Cast("int64_t") long nIndex,
                                            @Cast("const void*") long index, @Cast("void*") long out,
                                            @Cast("int64_t") long stream);

    // ---------------------------------------------------------------- norm.h (backward)
    public static native int ct_cuda_softmax_backward(int dtype, int log, @Cast("int64_t") long outer,
                                                      @Cast("int64_t") long dim, @Cast("int64_t") long inner,
                                                      @Cast("const void*") long y, @Cast("const void*") long dy,
                                                      @Cast("void*") long dx, @Cast("int64_t") long stream);

    public static native int ct_cuda_layernorm_backward(int dtype, @Cast("int64_t") long rows,
                                                        @Cast("int64_t") long cols, @Cast("const void*") long x,
                                                        @Cast("const void*") long gamma, double eps,
                                                        @Cast("const void*") long dy, @Cast("void*") long dx,
                                                        @Cast("void*") long dgamma, @Cast("void*") long dbeta,
                                                        @Cast("int64_t") long stream);

    public static native int ct_cuda_rmsnorm_backward(int dtype, @Cast("int64_t") long rows, @Cast("int64_t") long cols,
                                                      @Cast("const void*") long x, @Cast("const void*") long gamma,
                                                      double eps, @Cast("const void*") long dy, @Cast("void*") long dx,
                                                      @Cast("void*") long dgamma, @Cast("int64_t") long stream);

    // ---------------------------------------------------------------- index.h (index_add)
    public static native int ct_cuda_index_add(int dtype, int indexDtype, @Cast("int64_t") long outer,
                                               @Cast("int64_t") long axisLen, @Cast("int64_t") long inner,
                                               @Cast("int64_t") long nIndex, @Cast("const void*") long index,
                                               @Cast("const void*") long src, @Cast("void*") long out,
                                               @Cast("int64_t") long stream);

    // ---------------------------------------------------------------- random.h
    public static native int ct_cuda_random(int distribution, int dtype, @Cast("int64_t") long n,
                                            @Cast("void*") long out, @Cast("uint64_t") long seed,
                                            @Cast("uint64_t") long offset, double a, double b,
                                            @Cast("int64_t") long stream);
}
