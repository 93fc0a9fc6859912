package dev.cortado.backend.cuda;

import static org.bytedeco.cuda.global.cudnn.CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT;
import static org.bytedeco.cuda.global.cudnn.CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT;
import static org.bytedeco.cuda.global.cudnn.CUDNN_CONVOLUTION_FWD_ALGO_COUNT;
import static org.bytedeco.cuda.global.cudnn.CUDNN_CROSS_CORRELATION;
import static org.bytedeco.cuda.global.cudnn.CUDNN_DATA_BFLOAT16;
import static org.bytedeco.cuda.global.cudnn.CUDNN_DATA_DOUBLE;
import static org.bytedeco.cuda.global.cudnn.CUDNN_DATA_FLOAT;
import static org.bytedeco.cuda.global.cudnn.CUDNN_DATA_HALF;
import static org.bytedeco.cuda.global.cudnn.CUDNN_DEFAULT_MATH;
import static org.bytedeco.cuda.global.cudnn.CUDNN_DETERMINISTIC;
import static org.bytedeco.cuda.global.cudnn.CUDNN_STATUS_SUCCESS;
import static org.bytedeco.cuda.global.cudnn.CUDNN_TENSOR_NCHW;
import static org.bytedeco.cuda.global.cudnn.CUDNN_TENSOR_OP_MATH;

import dev.cortado.backend.CudaException;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import java.util.function.IntPredicate;
import org.bytedeco.cuda.cudart.CUstream_st;
import org.bytedeco.cuda.cudnn.cudnnContext;
import org.bytedeco.cuda.cudnn.cudnnConvolutionBwdDataAlgoPerf_t;
import org.bytedeco.cuda.cudnn.cudnnConvolutionBwdFilterAlgoPerf_t;
import org.bytedeco.cuda.cudnn.cudnnConvolutionFwdAlgoPerf_t;
import org.bytedeco.cuda.cudnn.cudnnConvolutionStruct;
import org.bytedeco.cuda.cudnn.cudnnFilterStruct;
import org.bytedeco.cuda.cudnn.cudnnTensorStruct;
import org.bytedeco.cuda.global.cudnn;
import org.bytedeco.javacpp.DoublePointer;
import org.bytedeco.javacpp.FloatPointer;
import org.bytedeco.javacpp.IntPointer;
import org.bytedeco.javacpp.Pointer;

/**
 * Convolutions through cuDNN (JavaCPP CUDA presets, the system's libcudnn), the CUDNN algorithm of
 * {@code Convolution}. Loaded lazily: a machine without libcudnn fails only when CUDNN is asked for,
 * with a {@link CudaException} that says so. The geometry is the native int64[25] array of
 * {@code cortado/conv.h}; tensors are described with explicit strides (NCHW or NHWC), the weight as
 * a KCRS filter. cuDNN's heuristic ({@code cudnnGet*Algorithm_v7}) picks the algorithm; the backward
 * passes take the first deterministic one when there is one. Workspace comes from the caching allocator on the
 * current stream. Applies when padding is symmetric and every size fits an int ({@link #applies}).
 */
public final class Cudnn {
    private static cudnnContext[] handles;

    private Cudnn() {
    }

    /** Whether cuDNN can express this geometry (symmetric padding; sizes and element counts below 2^31). */
    public static boolean applies(long[] g) {
        for (int i = 0; i < 3; i++) {
            if (g[16 + i] != g[19 + i]) {
                return false;
            }
        }
        for (long v : g) {
            if (v > Integer.MAX_VALUE) {
                return false;
            }
        }
        long s = g[4] * g[5] * g[6];
        long p = g[22] * g[23] * g[24];
        return g[0] * g[1] * s < Integer.MAX_VALUE && g[0] * g[2] * p < Integer.MAX_VALUE;
    }

    private static synchronized cudnnContext handle(int device) {
        if (handles == null) {
            try {
                org.bytedeco.javacpp.Loader.load(cudnn.class);
            } catch (LinkageError e) {
                throw new CudaException("conv algorithm CUDNN: cuDNN could not be loaded (is libcudnn 9 installed "
                        + "and on the library path?): " + e);
            }
            handles = new cudnnContext[CudaBackend.instance().deviceCount()];
        }
        if (handles[device] == null) {
            CudaBackend.instance().activate(device);
            cudnnContext h = new cudnnContext();
            check(cudnn.cudnnCreate(h), "cudnnCreate");
            handles[device] = h;
        }
        return handles[device];
    }

    private static void check(int status, String what) {
        if (status != CUDNN_STATUS_SUCCESS) {
            throw new CudaException("conv algorithm CUDNN: " + what + " failed: "
                    + cudnn.cudnnGetErrorString(status).getString() + " (status " + status + ")");
        }
    }

    private static Pointer at(long deviceAddress) {
        return new Pointer() {
            {
                this.address = deviceAddress;
            }
        };
    }

    private static int dataType(DType t) {
        return switch (t) {
            case FLOAT32 -> CUDNN_DATA_FLOAT;
            case FLOAT64 -> CUDNN_DATA_DOUBLE;
            case FLOAT16 -> CUDNN_DATA_HALF;
            case BFLOAT16 -> CUDNN_DATA_BFLOAT16;
            default -> throw new UnsupportedOperationException("conv algorithm CUDNN does not take " + t);
        };
    }

    /** Descriptors of one convolution, destroyed by {@link #close()}. */
    private static final class Descs implements AutoCloseable {
        final cudnnContext h;
        final cudnnTensorStruct x;
        final cudnnTensorStruct y;
        final cudnnTensorStruct b;
        final cudnnFilterStruct w;
        final cudnnConvolutionStruct conv;
        final DType type;
        final Device device;
        boolean bias;

        Descs(Device device, DType t, boolean nhwc, int spatial, long[] g) {
            this.device = device;
            this.type = t;
            CudaBackend be = CudaBackend.instance();
            be.activate(device.index());
            h = handle(device.index()); // loads cuDNN first: the struct classes below need it
            x = new cudnnTensorStruct();
            y = new cudnnTensorStruct();
            b = new cudnnTensorStruct();
            w = new cudnnFilterStruct();
            conv = new cudnnConvolutionStruct();
            try {
                describe(be, t, nhwc, spatial, g);
            } catch (RuntimeException e) {
                close(); // destroying a descriptor never created (NULL) is a no-op
                throw e;
            }
        }

        private void describe(CudaBackend be, DType t, boolean nhwc, int spatial, long[] g) {
            check(cudnn.cudnnSetStream(h, new CUstream_st(at(be.currentStream()))), "cudnnSetStream");
            int dt = dataType(t);
            int nd = spatial == 3 ? 5 : 4;
            int first = 3 - (nd - 2); // first of (D, H, W) used
            check(cudnn.cudnnCreateTensorDescriptor(x), "cudnnCreateTensorDescriptor");
            check(cudnn.cudnnCreateTensorDescriptor(y), "cudnnCreateTensorDescriptor");
            check(cudnn.cudnnCreateFilterDescriptor(w), "cudnnCreateFilterDescriptor");
            check(cudnn.cudnnCreateConvolutionDescriptor(conv), "cudnnCreateConvolutionDescriptor");
            setTensor(x, dt, nhwc, nd, g[0], g[1], g, 4, first);
            setTensor(y, dt, nhwc, nd, g[0], g[2], g, 22, first);
            int[] wd = new int[nd];
            wd[0] = (int) g[2];
            wd[1] = (int) (g[1] / g[3]);
            for (int i = 0; i < nd - 2; i++) {
                wd[2 + i] = (int) g[7 + first + i];
            }
            check(cudnn.cudnnSetFilterNdDescriptor(w, dt, CUDNN_TENSOR_NCHW, nd, wd), "cudnnSetFilterNdDescriptor");
            int[] pad = new int[nd - 2];
            int[] str = new int[nd - 2];
            int[] dil = new int[nd - 2];
            for (int i = 0; i < nd - 2; i++) {
                pad[i] = (int) g[16 + first + i];
                str[i] = (int) g[10 + first + i];
                dil[i] = (int) g[13 + first + i];
            }
            int compute = t == DType.FLOAT64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT;
            try (IntPointer p = new IntPointer(pad); IntPointer s = new IntPointer(str); IntPointer d = new IntPointer(dil)) {
                check(cudnn.cudnnSetConvolutionNdDescriptor(conv, nd - 2, p, s, d, CUDNN_CROSS_CORRELATION, compute),
                        "cudnnSetConvolutionNdDescriptor");
            }
            check(cudnn.cudnnSetConvolutionGroupCount(conv, (int) g[3]), "cudnnSetConvolutionGroupCount");
            boolean half = t == DType.FLOAT16 || t == DType.BFLOAT16;
            check(cudnn.cudnnSetConvolutionMathType(conv, half ? CUDNN_TENSOR_OP_MATH : CUDNN_DEFAULT_MATH),
                    "cudnnSetConvolutionMathType");
        }

        /** [n, ch, spatial...] with the layout's strides; sizes from g[from + first ...]. */
        private static void setTensor(cudnnTensorStruct d, int dt, boolean nhwc, int nd, long n, long ch, long[] g,
                                      int from, int first) {
            int[] dims = new int[nd];
            int[] strides = new int[nd];
            dims[0] = (int) n;
            dims[1] = (int) ch;
            for (int i = 0; i < nd - 2; i++) {
                dims[2 + i] = (int) g[from + first + i];
            }
            if (nhwc) {
                strides[1] = 1;
                long s = ch;
                for (int i = nd - 1; i >= 2; i--) {
                    strides[i] = (int) s;
                    s *= dims[i];
                }
                strides[0] = (int) s;
            } else {
                long s = 1;
                for (int i = nd - 1; i >= 0; i--) {
                    strides[i] = (int) s;
                    s *= dims[i];
                }
            }
            check(cudnn.cudnnSetTensorNdDescriptor(d, dt, nd, dims, strides), "cudnnSetTensorNdDescriptor");
        }

        void biasDescriptor(int nd, long k) {
            int[] dims = new int[nd];
            int[] strides = new int[nd];
            java.util.Arrays.fill(dims, 1);
            java.util.Arrays.fill(strides, 1);
            dims[1] = (int) k;
            strides[0] = (int) k;
            check(cudnn.cudnnCreateTensorDescriptor(b), "cudnnCreateTensorDescriptor");
            bias = true;
            check(cudnn.cudnnSetTensorNdDescriptor(b, dataType(type), nd, dims, strides), "cudnnSetTensorNdDescriptor");
        }

        Pointer scalar(double v) {
            return type == DType.FLOAT64 ? new DoublePointer(1).put(v) : new FloatPointer(1).put((float) v);
        }

        @Override
        public void close() {
            cudnn.cudnnDestroyTensorDescriptor(x);
            cudnn.cudnnDestroyTensorDescriptor(y);
            if (bias) {
                cudnn.cudnnDestroyTensorDescriptor(b);
            }
            cudnn.cudnnDestroyFilterDescriptor(w);
            cudnn.cudnnDestroyConvolutionDescriptor(conv);
        }
    }

    /** Workspace from the caching allocator (on the current stream), released after the launch. */
    private static final class Workspace implements AutoCloseable {
        final Device device;
        final long bytes;
        final long address;

        Workspace(Device device, long bytes) {
            this.device = device;
            this.bytes = Math.max(bytes, 256);
            this.address = CudaBackend.instance().allocate(device, this.bytes);
        }

        @Override
        public void close() {
            CudaBackend.instance().free(device, address, bytes);
        }
    }

    /** y = conv(x, w) (+ bias[k] when bias != 0); activations are applied by the caller. */
    public static void forward(Device device, DType t, boolean nhwc, int spatial, long[] g, long x, long w, long bias,
                               long y) {
        try (Descs d = new Descs(device, t, nhwc, spatial, g);
             cudnnConvolutionFwdAlgoPerf_t perf = new cudnnConvolutionFwdAlgoPerf_t(CUDNN_CONVOLUTION_FWD_ALGO_COUNT);
             IntPointer count = new IntPointer(1); Pointer one = d.scalar(1); Pointer zero = d.scalar(0)) {
            check(cudnn.cudnnGetConvolutionForwardAlgorithm_v7(d.h, d.x, d.w, d.conv, d.y,
                    CUDNN_CONVOLUTION_FWD_ALGO_COUNT, count, perf), "cudnnGetConvolutionForwardAlgorithm_v7");
            int pick = -1;
            for (int i = 0; i < count.get() && pick < 0; i++) {
                if (perf.getPointer(i).status() == CUDNN_STATUS_SUCCESS) {
                    pick = i;
                }
            }
            if (pick < 0) {
                throw new CudaException("conv algorithm CUDNN: no forward algorithm supports this convolution");
            }
            cudnnConvolutionFwdAlgoPerf_t chosen = perf.getPointer(pick);
            try (Workspace ws = new Workspace(device, chosen.memory())) {
                check(cudnn.cudnnConvolutionForward(d.h, one, d.x, at(x), d.w, at(w), d.conv, chosen.algo(), at(ws.address),
                        ws.bytes, zero, d.y, at(y)), "cudnnConvolutionForward");
            }
            if (bias != 0) {
                d.biasDescriptor(spatial == 3 ? 5 : 4, g[2]);
                check(cudnn.cudnnAddTensor(d.h, one, d.b, at(bias), one, d.y, at(y)), "cudnnAddTensor");
            }
        }
    }

    /**
     * Index of the algorithm to run among the {@code count} cuDNN ranked: the first successful deterministic one,
     * else cuDNN's first successful one, else -1.
     */
    private static int pickAlgorithm(int count, IntPredicate succeeded, IntPredicate deterministic) {
        int any = -1;
        for (int i = 0; i < count; i++) {
            if (succeeded.test(i)) {
                if (deterministic.test(i)) {
                    return i;
                }
                any = any < 0 ? i : any;
            }
        }
        return any;
    }

    /** dx = conv^T(dy, w). */
    public static void backwardData(Device device, DType t, boolean nhwc, int spatial, long[] g, long dy, long w,
                                    long dx) {
        try (Descs d = new Descs(device, t, nhwc, spatial, g);
             cudnnConvolutionBwdDataAlgoPerf_t perf =
                     new cudnnConvolutionBwdDataAlgoPerf_t(CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT);
             IntPointer count = new IntPointer(1); Pointer one = d.scalar(1); Pointer zero = d.scalar(0)) {
            check(cudnn.cudnnGetConvolutionBackwardDataAlgorithm_v7(d.h, d.w, d.y, d.conv, d.x,
                    CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, count, perf), "cudnnGetConvolutionBackwardDataAlgorithm_v7");
            int pick = pickAlgorithm(count.get(), i -> perf.getPointer(i).status() == CUDNN_STATUS_SUCCESS,
                    i -> perf.getPointer(i).determinism() == CUDNN_DETERMINISTIC);
            if (pick < 0) {
                throw new CudaException("conv algorithm CUDNN: no backward-data algorithm supports this convolution");
            }
            cudnnConvolutionBwdDataAlgoPerf_t chosen = perf.getPointer(pick);
            try (Workspace ws = new Workspace(device, chosen.memory())) {
                check(cudnn.cudnnConvolutionBackwardData(d.h, one, d.w, at(w), d.y, at(dy), d.conv, chosen.algo(),
                        at(ws.address), ws.bytes, zero, d.x, at(dx)), "cudnnConvolutionBackwardData");
            }
        }
    }

    /** dw = sum over the batch of x (*) dy, with a deterministic algorithm. */
    public static void backwardWeight(Device device, DType t, boolean nhwc, int spatial, long[] g, long x, long dy,
                                      long dw) {
        try (Descs d = new Descs(device, t, nhwc, spatial, g);
             cudnnConvolutionBwdFilterAlgoPerf_t perf =
                     new cudnnConvolutionBwdFilterAlgoPerf_t(CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT);
             IntPointer count = new IntPointer(1); Pointer one = d.scalar(1); Pointer zero = d.scalar(0)) {
            check(cudnn.cudnnGetConvolutionBackwardFilterAlgorithm_v7(d.h, d.x, d.y, d.conv, d.w,
                    CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, count, perf), "cudnnGetConvolutionBackwardFilterAlgorithm_v7");
            int pick = pickAlgorithm(count.get(), i -> perf.getPointer(i).status() == CUDNN_STATUS_SUCCESS,
                    i -> perf.getPointer(i).determinism() == CUDNN_DETERMINISTIC);
            if (pick < 0) {
                throw new CudaException("conv algorithm CUDNN: no backward-weight algorithm supports this convolution");
            }
            cudnnConvolutionBwdFilterAlgoPerf_t chosen = perf.getPointer(pick);
            try (Workspace ws = new Workspace(device, chosen.memory())) {
                check(cudnn.cudnnConvolutionBackwardFilter(d.h, one, d.x, at(x), d.y, at(dy), d.conv, chosen.algo(),
                        at(ws.address), ws.bytes, zero, d.w, at(dw)), "cudnnConvolutionBackwardFilter");
            }
        }
    }
}
