package dev.cortado.bench;

import ai.onnxruntime.OnnxJavaType;
import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtSession;
import com.google.protobuf.ByteString;
import dev.cortado.backend.cpu.NativeCpu;
import dev.cortado.backend.kernels.NativeCodes;
import dev.cortado.onnx.proto.Onnx.GraphProto;
import dev.cortado.onnx.proto.Onnx.ModelProto;
import dev.cortado.onnx.proto.Onnx.NodeProto;
import dev.cortado.onnx.proto.Onnx.OperatorSetIdProto;
import dev.cortado.onnx.proto.Onnx.TensorProto;
import dev.cortado.ops.Convolution.Activation;
import dev.cortado.ops.Generator;
import dev.cortado.ops.LinearAlgebra;
import dev.cortado.quant.Int8Gemm;
import dev.cortado.quant.PackedInt8Matrix;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;
import java.nio.ByteBuffer;
import java.nio.IntBuffer;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

/**
 * Square int8 GEMM C[n,n] = (A - za)(B - zb), A uint8, B int8 packed once, 2 n^3 integer ops
 * per call, next to our float32 matmul of the same shape (the bar: the int8 GEMM at
 * least 3.5x the float32 one and near the VNNI peak, which is 4x the fp32 FMA peak measured by
 * CeilingBenchmark in the same run):
 * <ul>
 *   <li>{@code int8GemmInt32}: {@link Int8Gemm#matmulInteger} (int32 output, as ONNX MatMulInteger);</li>
 *   <li>{@code int8GemmFloat32}: the same product with the fused float32 epilogue (per-column scale,
 *       bias, ReLU);</li>
 *   <li>{@code int8GemmGelu}: the float32 epilogue with the erf GELU instead of ReLU (~60 FLOPs an
 *       output);</li>
 *   <li>{@code int8GemmBf16}: the ReLU epilogue with a bfloat16 output (half the bytes of C);</li>
 *   <li>{@code float32Matmul}: {@link LinearAlgebra#matmul} on float32 operands of the same shape;</li>
 *   <li>{@code ortMatMulInteger}: the peer, ONNX Runtime 1.29 (Java API) running a one-node
 *       MatMulInteger model of the same operands (B an initializer, so ORT pre-packs it as we do;
 *       a_zero_point 3; int32 output), one intra-op thread per benchmark thread; its output is
 *       checked against ours in setup.</li>
 * </ul>
 * Packing B is done once in setup (it is a weight). Thread count {@code threads}; run with
 * OMP_NUM_THREADS / OPENBLAS_NUM_THREADS set (jmh/run-main-table.sh does).
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Fork(value = 1, jvmArgsAppend = {"-Xms512m", "-Xmx512m"})
@Warmup(iterations = 3, time = 1, timeUnit = TimeUnit.SECONDS)
@Measurement(iterations = 5, time = 1, timeUnit = TimeUnit.SECONDS)
@State(Scope.Benchmark)
public class Int8GemmBenchmark {
    @Param({"1024", "2048"})
    public int n;

    @Param({"1", "2"})
    public int threads;

    /** The int8 GEMM kernel ({@code ct_cpu_set_qgemm_kernel}): auto, amx, vnni or avx2. */
    @Param({"auto"})
    public String kernel;

    private Tensor a8;
    private PackedInt8Matrix b8;
    private Tensor scale;
    private Tensor bias;
    private Tensor af;
    private Tensor bf;
    private OrtEnvironment env;
    private OrtSession ort;
    private Map<String, OnnxTensor> ortFeeds;
    private byte[] aBytes;
    private byte[] bBytes;

    @Setup(Level.Trial)
    public void setup() throws OrtException {
        BenchSupport.setThreads(threads);
        int code = switch (kernel) {
            case "auto" -> NativeCodes.QGEMM_AUTO;
            case "amx" -> NativeCodes.QGEMM_AMX;
            case "vnni" -> NativeCodes.QGEMM_VNNI;
            case "avx2" -> NativeCodes.QGEMM_AVX2;
            default -> throw new IllegalArgumentException("kernel " + kernel + ": not auto, amx, vnni or avx2");
        };
        if (NativeCpu.ct_cpu_set_qgemm_kernel(code) != 0) {
            throw new IllegalStateException("kernel " + kernel + ": " + NativeCpu.ct_cpu_last_error().getString());
        }
        Random r = new Random(42);
        aBytes = new byte[n * n];
        bBytes = new byte[n * n];
        r.nextBytes(aBytes);
        r.nextBytes(bBytes);
        a8 = Tensor.of(aBytes, DType.UINT8, n, n);
        try (Tensor b = Tensor.of(bBytes, DType.INT8, n, n)) {
            b8 = PackedInt8Matrix.pack(b);
        }
        scale = Tensor.full(1e-4, DType.FLOAT32, Device.CPU, n);
        bias = Tensor.full(0.5, DType.FLOAT32, Device.CPU, n);
        Generator g = Generator.seeded(42);
        af = g.uniform(-1, 1, DType.FLOAT32, Device.CPU, n, n);
        bf = g.uniform(-1, 1, DType.FLOAT32, Device.CPU, n, n);
        verify();
        env = OrtEnvironment.getEnvironment();
        ort = BenchSupport.ortSession(env, matMulIntegerModel(n, bBytes).toByteArray(), threads);
        ortFeeds = Map.of("a", OnnxTensor.createTensor(env, ByteBuffer.wrap(aBytes), new long[] {n, n}, OnnxJavaType.UINT8));
        try (OrtSession.Result res = ort.run(ortFeeds); Tensor c = Int8Gemm.matmulInteger(a8, 3, b8)) {
            IntBuffer got = ((OnnxTensor) res.get(0)).getIntBuffer();
            int[] ours = c.toIntArray();
            for (int i = 0; i < ours.length; i++) {
                if (got.get(i) != ours[i]) {
                    throw new IllegalStateException("ONNX Runtime differs at " + i + ": " + got.get(i) + " vs " + ours[i]);
                }
            }
        }
    }

    /** y = MatMulInteger(a, b, a_zero_point = 3): a uint8 [n, n] input, b an int8 initializer. */
    static ModelProto matMulIntegerModel(int n, byte[] b) {
        GraphProto g = GraphProto.newBuilder().setName("matmul_integer")
                .addInput(BenchSupport.onnxValue("a", TensorProto.DataType.UINT8_VALUE, n, n))
                .addInitializer(TensorProto.newBuilder().setName("b").setDataType(TensorProto.DataType.INT8_VALUE)
                        .addDims(n).addDims(n).setRawData(ByteString.copyFrom(b)))
                .addInitializer(TensorProto.newBuilder().setName("a_zero_point")
                        .setDataType(TensorProto.DataType.UINT8_VALUE).setRawData(ByteString.copyFrom(new byte[] {3})))
                .addNode(NodeProto.newBuilder().setOpType("MatMulInteger").addInput("a").addInput("b")
                        .addInput("a_zero_point").addOutput("y"))
                .addOutput(BenchSupport.onnxValue("y", TensorProto.DataType.INT32_VALUE, n, n)).build();
        return ModelProto.newBuilder().setIrVersion(8).addOpsetImport(OperatorSetIdProto.newBuilder().setVersion(13))
                .setGraph(g).build();
    }

    /** A few elements of the int8 product against exact sums (guards against timing a no-op). */
    private void verify() {
        try (Tensor c = Int8Gemm.matmulInteger(a8, 3, b8)) {
            int[] got = c.toIntArray();
            Random r = new Random(1);
            for (int t = 0; t < 64; t++) {
                int i = r.nextInt(n);
                int j = r.nextInt(n);
                long s = 0;
                for (int k = 0; k < n; k++) {
                    s += ((aBytes[i * n + k] & 0xFF) - 3L) * bBytes[k * n + j];
                }
                if (got[i * n + j] != s) {
                    throw new IllegalStateException("int8 GEMM differs at (" + i + ", " + j + "): " + got[i * n + j]
                            + " vs " + s);
                }
            }
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() throws OrtException {
        ortFeeds.values().forEach(OnnxTensor::close);
        ort.close();
        a8.close();
        b8.close();
        scale.close();
        bias.close();
        af.close();
        bf.close();
        NativeCpu.ct_cpu_set_qgemm_kernel(NativeCodes.QGEMM_AUTO);
    }

    @Benchmark
    public long int8GemmInt32() {
        try (Tensor c = Int8Gemm.matmulInteger(a8, 3, b8)) {
            return c.dataAddress();
        }
    }

    @Benchmark
    public long int8GemmFloat32() {
        return epilogue(DType.FLOAT32, Activation.RELU);
    }

    @Benchmark
    public long int8GemmGelu() {
        return epilogue(DType.FLOAT32, Activation.GELU);
    }

    @Benchmark
    public long int8GemmBf16() {
        return epilogue(DType.BFLOAT16, Activation.RELU);
    }

    private long epilogue(DType out, Activation act) {
        try (Tensor c = Int8Gemm.GEMM_OP.call(new Int8Gemm.Epilogue(3, out, act, 0), a8, b8.packed(), b8.colsum(), null, scale,
                bias)) {
            return c.dataAddress();
        }
    }

    @Benchmark
    public long float32Matmul() {
        try (Tensor c = LinearAlgebra.matmul(af, bf)) {
            return c.dataAddress();
        }
    }

    @Benchmark
    public int ortMatMulInteger() throws OrtException {
        try (OrtSession.Result res = ort.run(ortFeeds)) {
            return res.size();
        }
    }
}
