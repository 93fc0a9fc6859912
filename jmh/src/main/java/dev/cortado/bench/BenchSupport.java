package dev.cortado.bench;

import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtSession;
import dev.cortado.backend.cpu.CpuBackend;
import dev.cortado.onnx.proto.Onnx.TensorShapeProto;
import dev.cortado.onnx.proto.Onnx.TypeProto;
import dev.cortado.onnx.proto.Onnx.ValueInfoProto;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;
import org.bytedeco.javacpp.FloatPointer;
import org.bytedeco.javacpp.Pointer;
import org.bytedeco.openblas.global.openblas_nolapack;

/** Shared helpers: thread setup and wrapping Cortado's native buffers for the raw baselines. */
final class BenchSupport {
    private BenchSupport() {
    }

    /**
     * Sets the thread count of Cortado's OpenMP kernels and of OpenBLAS (Cortado's call sets
     * both already; the preset call makes the raw cblas baseline independent of that).
     */
    static void setThreads(int threads) {
        CpuBackend.setThreads(threads);
        // openblas_set_num_threads through the JavaCPP preset (same libopenblas.so.0 that
        // libcortado_cpu links: NativeCpu loads it from the preset jar before itself)
        openblas_nolapack.blas_set_num_threads(threads);
        if (CpuBackend.threads() != threads) {
            throw new IllegalStateException("CpuBackend.threads() = " + CpuBackend.threads() + ", wanted " + threads);
        }
    }

    /** A graph input or output of the one-node ONNX models built in the benchmarks. */
    static ValueInfoProto onnxValue(String name, int elemType, long... dims) {
        TensorShapeProto.Builder shape = TensorShapeProto.newBuilder();
        for (long d : dims) {
            shape.addDim(TensorShapeProto.Dimension.newBuilder().setDimValue(d));
        }
        return ValueInfoProto.newBuilder().setName(name).setType(TypeProto.newBuilder().setTensorType(
                TypeProto.Tensor.newBuilder().setElemType(elemType).setShape(shape))).build();
    }

    /**
     * The ONNX Runtime peer's session as the benchmarks run it: {@code threads} intra-op threads
     * (the benchmark's thread count), one inter-op thread, sequential execution, all graph
     * optimizations.
     */
    static OrtSession ortSession(OrtEnvironment env, byte[] model, int threads) throws OrtException {
        try (OrtSession.SessionOptions o = new OrtSession.SessionOptions()) {
            o.setIntraOpNumThreads(threads);
            o.setInterOpNumThreads(1);
            o.setExecutionMode(OrtSession.SessionOptions.ExecutionMode.SEQUENTIAL);
            o.setOptimizationLevel(OrtSession.SessionOptions.OptLevel.ALL_OPT);
            return env.createSession(model, o);
        }
    }

    /** A FloatPointer over {@code count} floats at {@code address}; it does not own the memory. */
    static FloatPointer floats(long at, long count) {
        // (parameter names must differ from Pointer's fields, which shadow them in the initializer)
        return new FloatPointer((Pointer) null) {
            {
                this.address = at;
                this.position = 0;
                this.limit = count;
                this.capacity = count;
            }
        };
    }

    /** A plain Pointer over {@code bytes} bytes at {@code address}; it does not own the memory. */
    static Pointer bytes(long at, long size) {
        return new Pointer((Pointer) null) {
            {
                this.address = at;
                this.position = 0;
                this.limit = size;
                this.capacity = size;
            }
        };
    }

    /** A contiguous float32 tensor on the CPU filled with {@code value}. */
    static Tensor filled(float value, long... dims) {
        return Tensor.full(value, DType.FLOAT32, Device.CPU, dims);
    }
}
