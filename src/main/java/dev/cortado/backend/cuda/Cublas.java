package dev.cortado.backend.cuda;

import static org.bytedeco.cuda.global.cublas.CUBLAS_COMPUTE_32F;
import static org.bytedeco.cuda.global.cublas.CUBLAS_COMPUTE_32F_FAST_TF32;
import static org.bytedeco.cuda.global.cublas.CUBLAS_COMPUTE_64F;
import static org.bytedeco.cuda.global.cublas.CUBLAS_GEMM_DEFAULT;
import static org.bytedeco.cuda.global.cublas.CUBLAS_OP_N;
import static org.bytedeco.cuda.global.cublas.CUBLAS_OP_T;
import static org.bytedeco.cuda.global.cublas.CUBLAS_STATUS_SUCCESS;
import static org.bytedeco.cuda.global.cudart.CUDA_R_16BF;
import static org.bytedeco.cuda.global.cudart.CUDA_R_16F;
import static org.bytedeco.cuda.global.cudart.CUDA_R_32F;
import static org.bytedeco.cuda.global.cudart.CUDA_R_64F;

import dev.cortado.backend.CudaException;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import org.bytedeco.cuda.cublas.cublasContext;
import org.bytedeco.cuda.cudart.CUstream_st;
import org.bytedeco.cuda.global.cublas;
import org.bytedeco.javacpp.DoublePointer;
import org.bytedeco.javacpp.FloatPointer;
import org.bytedeco.javacpp.Pointer;

/**
 * Matmul on CUDA through cuBLAS (JavaCPP CUDA presets, using the system's libcublas).
 * Row-major {@code C = alpha op(A) op(B) + beta C} is computed as the column-major
 * {@code C^T = op(B)^T op(A)^T}. float32 uses full-precision FP32 unless TF32 is enabled with
 * {@link #setTf32Enabled(boolean)}; bfloat16 and float16 use tensor cores with float32 accumulation.
 */
public final class Cublas {
    private static volatile boolean tf32;
    private static cublasContext[] handles;

    private Cublas() {
    }

    /** Opt in to TF32 tensor-core math for float32 matmuls (10-bit mantissa inputs, ~8x faster). */
    public static void setTf32Enabled(boolean enabled) {
        tf32 = enabled;
    }

    public static boolean tf32Enabled() {
        return tf32;
    }

    private static synchronized cublasContext handle(int device) {
        if (handles == null) {
            try {
                org.bytedeco.javacpp.Loader.load(cublas.class);
            } catch (LinkageError e) {
                throw new CudaException("cuBLAS could not be loaded (is the CUDA toolkit's libcublas installed?): " + e);
            }
            handles = new cublasContext[CudaBackend.instance().deviceCount()];
        }
        if (handles[device] == null) {
            CudaBackend.instance().activate(device);
            cublasContext h = new cublasContext();
            check(cublas.cublasCreate_v2(h), "cublasCreate");
            handles[device] = h;
        }
        return handles[device];
    }

    private static void check(int status, String what) {
        if (status != CUBLAS_STATUS_SUCCESS) {
            throw new CudaException(what + " failed: " + cublas.cublasGetStatusString(status).getString()
                    + " (status " + status + ")");
        }
    }

    /** A pointer object over device memory it does not own. */
    private static Pointer at(long deviceAddress) {
        return new Pointer() {
            {
                this.address = deviceAddress;
            }
        };
    }

    /** Batched row-major GEMM with element strides between batch entries (0 broadcasts). */
    public static void gemm(Device device, DType dtype, boolean transA, boolean transB, long batch,
                            long m, long n, long k, double alpha,
                            long a, long lda, long strideA, long b, long ldb, long strideB,
                            double beta, long c, long ldc, long strideC) {
        int type;
        int compute;
        switch (dtype) {
            case FLOAT32 -> {
                type = CUDA_R_32F;
                compute = tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
            }
            case FLOAT64 -> {
                type = CUDA_R_64F;
                compute = CUBLAS_COMPUTE_64F;
            }
            case BFLOAT16 -> {
                type = CUDA_R_16BF;
                compute = CUBLAS_COMPUTE_32F;
            }
            case FLOAT16 -> {
                type = CUDA_R_16F;
                compute = CUBLAS_COMPUTE_32F;
            }
            default -> throw new UnsupportedOperationException("matmul on CUDA does not take " + dtype);
        }
        if (m > Integer.MAX_VALUE || n > Integer.MAX_VALUE || k > Integer.MAX_VALUE || batch > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("matmul on CUDA: sizes beyond 2^31 are not supported (m=" + m
                    + ", n=" + n + ", k=" + k + ", batch=" + batch + ")");
        }
        int dev = device.index();
        CudaBackend backend = CudaBackend.instance();
        backend.activate(dev);
        cublasContext h = handle(dev);
        check(cublas.cublasSetStream_v2(h, new CUstream_st(at(backend.currentStream()))), "cublasSetStream");
        Pointer alphaP = compute == CUBLAS_COMPUTE_64F ? new DoublePointer(1).put(alpha) : new FloatPointer(1).put((float) alpha);
        Pointer betaP = compute == CUBLAS_COMPUTE_64F ? new DoublePointer(1).put(beta) : new FloatPointer(1).put((float) beta);
        try {
            check(cublas.cublasGemmStridedBatchedEx(h, transB ? CUBLAS_OP_T : CUBLAS_OP_N, transA ? CUBLAS_OP_T : CUBLAS_OP_N,
                    (int) n, (int) m, (int) k, alphaP, at(b), type, (int) ldb, strideB, at(a), type, (int) lda, strideA,
                    betaP, at(c), type, (int) ldc, strideC, (int) batch, compute, CUBLAS_GEMM_DEFAULT),
                    "cublasGemmStridedBatchedEx(" + dtype + ", m=" + m + ", n=" + n + ", k=" + k + ", batch=" + batch + ")");
        } finally {
            alphaP.close();
            betaP.close();
        }
    }
}
