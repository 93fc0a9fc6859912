package dev.cortado.bench;

import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtSession;
import com.google.protobuf.ByteString;
import dev.cortado.onnx.InferenceSession;
import dev.cortado.onnx.proto.Onnx.AttributeProto;
import dev.cortado.onnx.proto.Onnx.GraphProto;
import dev.cortado.onnx.proto.Onnx.ModelProto;
import dev.cortado.onnx.proto.Onnx.NodeProto;
import dev.cortado.onnx.proto.Onnx.OperatorSetIdProto;
import dev.cortado.onnx.proto.Onnx.TensorProto;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
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
 * ONNX convolutions at batch 1, where packing a constant weight once matters: a model of four
 * {@code Conv (c -> c, 3x3, pads 1) + Relu} with the weights as initializers, on x [1, c, hw, hw]
 * ({@code shape}: {@code 256x14} and {@code 512x7}, ResNet's last two stages; 4 * 2 * c * c * 9
 * * hw * hw FLOPs of direct convolution: 0.925 GFLOP both), NCHW as ONNX writes it.
 * <ul>
 *   <li>{@code cortado}: {@code InferenceSession.run} with the default optimization (the Conv
 *       weights packed once per input geometry, {@code dev.cortado.fused.PackedConv});</li>
 *   <li>{@code cortadoUnfused}: {@code Optimization.NONE} (the model as exported: Winograd
 *       transforms every weight at every call);</li>
 *   <li>{@code onnxRuntime}: ONNX Runtime 1.29 Java, all graph optimizations, {@code threads}
 *       intra-op threads, on the same model bytes and input.</li>
 * </ul>
 * The setup checks Cortado's output against ONNX Runtime's (1e-3 of the largest value).
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Fork(value = 1, jvmArgsAppend = {"-Xms1g", "-Xmx1g"})
@Warmup(iterations = 3, time = 1, timeUnit = TimeUnit.SECONDS)
@Measurement(iterations = 5, time = 1, timeUnit = TimeUnit.SECONDS)
@State(Scope.Benchmark)
public class OnnxConvBenchmark {
    @Param({"256x14", "512x7"})
    public String shape;

    @Param({"1", "2"})
    public int threads;

    private InferenceSession packed;
    private InferenceSession unfused;
    private Tensor x;
    private OrtEnvironment env;
    private OrtSession ort;
    private Map<String, OnnxTensor> ortFeeds;

    static ModelProto model(int c, int hw) {
        Random r = new Random(1);
        GraphProto.Builder g = GraphProto.newBuilder().setName("convs")
                .addInput(BenchSupport.onnxValue("x", TensorProto.DataType.FLOAT_VALUE, 1, c, hw, hw));
        AttributeProto pads = AttributeProto.newBuilder().setName("pads").setType(AttributeProto.AttributeType.INTS)
                .addInts(1).addInts(1).addInts(1).addInts(1).build();
        String prev = "x";
        for (int i = 0; i < 4; i++) {
            ByteBuffer b = ByteBuffer.allocate(4 * c * c * 9).order(ByteOrder.LITTLE_ENDIAN);
            for (int j = 0; j < c * c * 9; j++) {
                b.putFloat((float) (r.nextGaussian() * Math.sqrt(2.0 / (9 * c))));
            }
            g.addInitializer(TensorProto.newBuilder().setName("w" + i).setDataType(1).addDims(c).addDims(c).addDims(3)
                    .addDims(3).setRawData(ByteString.copyFrom(b.array())));
            g.addNode(NodeProto.newBuilder().setOpType("Conv").addInput(prev).addInput("w" + i).addOutput("c" + i)
                    .addAttribute(pads));
            g.addNode(NodeProto.newBuilder().setOpType("Relu").addInput("c" + i).addOutput("r" + i));
            prev = "r" + i;
        }
        g.addOutput(BenchSupport.onnxValue(prev, TensorProto.DataType.FLOAT_VALUE, 1, c, hw, hw));
        return ModelProto.newBuilder().setIrVersion(8).addOpsetImport(OperatorSetIdProto.newBuilder().setVersion(13))
                .setGraph(g).build();
    }

    @Setup(Level.Trial)
    public void setup() throws Exception {
        BenchSupport.setThreads(threads);
        int c = Integer.parseInt(shape.substring(0, shape.indexOf('x')));
        int hw = Integer.parseInt(shape.substring(shape.indexOf('x') + 1));
        ModelProto m = model(c, hw);
        packed = InferenceSession.builder(m).threads(threads).build();
        unfused = InferenceSession.builder(m).threads(threads).optimization(InferenceSession.Optimization.NONE).build();
        float[] in = new float[c * hw * hw];
        Random r = new Random(2);
        for (int i = 0; i < in.length; i++) {
            in[i] = (float) r.nextGaussian();
        }
        x = Tensor.of(in, Device.CPU, 1, c, hw, hw);
        env = OrtEnvironment.getEnvironment();
        ort = BenchSupport.ortSession(env, m.toByteArray(), threads);
        ortFeeds = Map.of("x", OnnxTensor.createTensor(env, FloatBuffer.wrap(in), new long[] {1, c, hw, hw}));
        float[] want;
        try (OrtSession.Result res = ort.run(ortFeeds)) {
            FloatBuffer fb = ((OnnxTensor) res.get(0)).getFloatBuffer();
            want = new float[fb.remaining()];
            fb.get(want);
        }
        for (InferenceSession s : new InferenceSession[] {packed, unfused}) {
            float[] got = run(s).clone();
            double scale = 0;
            for (float v : want) {
                scale = Math.max(scale, Math.abs(v));
            }
            for (int i = 0; i < want.length; i++) {
                if (Math.abs(got[i] - want[i]) > 1e-3 * scale) {
                    throw new IllegalStateException("Cortado differs from ONNX Runtime at " + i + ": " + got[i] + " vs " + want[i]);
                }
            }
        }
    }

    private float[] run(InferenceSession s) {
        Map<String, Tensor> out = s.run(Map.of("x", x));
        try {
            return out.values().iterator().next().toFloatArray();
        } finally {
            out.values().forEach(Tensor::close);
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() throws OrtException {
        packed.close();
        unfused.close();
        x.close();
        ortFeeds.values().forEach(OnnxTensor::close);
        ort.close();
    }

    private int runAndClose(InferenceSession s) {
        Map<String, Tensor> out = s.run(Map.of("x", x));
        out.values().forEach(Tensor::close);
        return out.size();
    }

    @Benchmark
    public int cortado() {
        return runAndClose(packed);
    }

    @Benchmark
    public int cortadoUnfused() {
        return runAndClose(unfused);
    }

    @Benchmark
    public Object onnxRuntime() throws OrtException {
        try (OrtSession.Result res = ort.run(ortFeeds)) {
            return res.size();
        }
    }
}
