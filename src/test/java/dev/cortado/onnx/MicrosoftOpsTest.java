package dev.cortado.onnx;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.onnxruntime.OnnxJavaType;
import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtSession;
import dev.cortado.onnx.proto.Onnx.AttributeProto;
import dev.cortado.onnx.proto.Onnx.GraphProto;
import dev.cortado.onnx.proto.Onnx.ModelProto;
import dev.cortado.onnx.proto.Onnx.NodeProto;
import dev.cortado.onnx.proto.Onnx.OperatorSetIdProto;
import dev.cortado.onnx.proto.Onnx.TensorProto;
import dev.cortado.onnx.proto.Onnx.TensorShapeProto;
import dev.cortado.onnx.proto.Onnx.TypeProto;
import dev.cortado.onnx.proto.Onnx.ValueInfoProto;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.nio.ByteBuffer;
import java.nio.FloatBuffer;
import java.nio.IntBuffer;
import java.nio.LongBuffer;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The com.microsoft handlers ({@link MicrosoftOps}) against ONNX Runtime 1.29's own CPU kernels:
 * each test builds a one-node model with the protobuf classes, runs it in ONNX Runtime (graph
 * optimizations off, so its contributed kernel runs as written) and in Cortado on the same fresh
 * random inputs, and compares every output the node asks for.
 *
 * <p>Tolerances (float32 outputs): activations and BiasAdd 1e-5 absolute + 1e-5 relative (the
 * tanh/erf evaluations differ in the last bits); normalizations, FusedMatMul, attention and rotary
 * 1e-4 + 1e-4 relative (different summation orders over up to 36 terms); MatMulIntegerToFloat
 * 1e-5 + 1e-5 relative (the integer product is exact, only the float scaling rounds);
 * DynamicQuantizeMatMul: the uint8 quantization of A may round a value that sits on a tie the
 * other way, which moves one product term by a_scale·|b|·b_scale, so 2 % of the output range.
 * BiasAdd has no ONNX Runtime CPU kernel (it is CUDA-only): it is checked against a float64 sum.
 */
@SuppressWarnings("try") // Scope blocks free what the body creates without naming the scope
class MicrosoftOpsTest {
    private static final Random RND = new Random(1729);
    private static OrtEnvironment env;

    @BeforeAll
    static void ort() {
        env = OrtEnvironment.getEnvironment();
    }

    @AfterAll
    static void noop() {
        // the ORT environment is process-wide and closes at exit
    }

    /** A graph input: its name, dtype, dims and data (float[], int[], long[] or byte[]); null data: an absent optional input. */
    private record In(String name, DType dtype, long[] dims, Object data) {
        static In f(String name, long... dims) {
            float[] v = new float[(int) count(dims)];
            for (int i = 0; i < v.length; i++) {
                v[i] = (float) RND.nextGaussian();
            }
            return new In(name, DType.FLOAT32, dims, v);
        }

        static In absent() {
            return new In("", null, null, null);
        }
    }

    private static long count(long[] dims) {
        long n = 1;
        for (long d : dims) {
            n *= d;
        }
        return n;
    }

    private static AttributeProto i(String name, long v) {
        return AttributeProto.newBuilder().setName(name).setType(AttributeProto.AttributeType.INT).setI(v).build();
    }

    private static AttributeProto f(String name, double v) {
        return AttributeProto.newBuilder().setName(name).setType(AttributeProto.AttributeType.FLOAT).setF((float) v).build();
    }

    private static AttributeProto ints(String name, long... v) {
        AttributeProto.Builder b = AttributeProto.newBuilder().setName(name).setType(AttributeProto.AttributeType.INTS);
        for (long x : v) {
            b.addInts(x);
        }
        return b.build();
    }

    private static int onnxType(DType t) {
        return switch (t) {
            case FLOAT32 -> TensorProto.DataType.FLOAT_VALUE;
            case INT32 -> TensorProto.DataType.INT32_VALUE;
            case INT64 -> TensorProto.DataType.INT64_VALUE;
            case UINT8 -> TensorProto.DataType.UINT8_VALUE;
            case INT8 -> TensorProto.DataType.INT8_VALUE;
            default -> throw new IllegalArgumentException(t.toString());
        };
    }

    private static ValueInfoProto info(String name, DType dtype, long[] dims) {
        TypeProto.Tensor.Builder tt = TypeProto.Tensor.newBuilder().setElemType(onnxType(dtype));
        if (dims != null) {
            TensorShapeProto.Builder s = TensorShapeProto.newBuilder();
            for (long d : dims) {
                s.addDim(TensorShapeProto.Dimension.newBuilder().setDimValue(d));
            }
            tt.setShape(s);
        }
        return ValueInfoProto.newBuilder().setName(name).setType(TypeProto.newBuilder().setTensorType(tt)).build();
    }

    /** A one-node model: domain/op with these inputs (graph inputs), named outputs ("" skips one), attributes. */
    static ModelProto model(String domain, String op, List<In> inputs, List<String> outputs, AttributeProto... attrs) {
        NodeProto.Builder node = NodeProto.newBuilder().setOpType(op).setDomain(domain).setName("node_" + op);
        GraphProto.Builder g = GraphProto.newBuilder().setName("g");
        for (In in : inputs) {
            node.addInput(in.name());
            if (!in.name().isEmpty()) {
                g.addInput(info(in.name(), in.dtype(), in.dims()));
            }
        }
        for (String o : outputs) {
            node.addOutput(o);
            if (!o.isEmpty()) {
                g.addOutput(info(o, DType.FLOAT32, null));
            }
        }
        for (AttributeProto a : attrs) {
            node.addAttribute(a);
        }
        return ModelProto.newBuilder().setIrVersion(8).setProducerName("MicrosoftOpsTest")
                .addOpsetImport(OperatorSetIdProto.newBuilder().setVersion(17))
                .addOpsetImport(OperatorSetIdProto.newBuilder().setDomain(MicrosoftOps.DOMAIN).setVersion(1))
                .setGraph(g.addNode(node)).build();
    }

    private static Tensor cortadoTensor(In in) {
        return switch (in.dtype()) {
            case FLOAT32 -> Tensor.of((float[]) in.data(), in.dims());
            case INT32 -> Tensor.of((int[]) in.data(), in.dims());
            case INT64 -> Tensor.of((long[]) in.data(), in.dims());
            case UINT8, INT8 -> Tensor.of((byte[]) in.data(), in.dtype(), in.dims());
            default -> throw new IllegalArgumentException(in.dtype().toString());
        };
    }

    private static OnnxTensor ortTensor(In in) throws OrtException {
        return switch (in.dtype()) {
            case FLOAT32 -> OnnxTensor.createTensor(env, FloatBuffer.wrap((float[]) in.data()), in.dims());
            case INT32 -> OnnxTensor.createTensor(env, IntBuffer.wrap((int[]) in.data()), in.dims());
            case INT64 -> OnnxTensor.createTensor(env, LongBuffer.wrap((long[]) in.data()), in.dims());
            case UINT8 -> OnnxTensor.createTensor(env, ByteBuffer.wrap((byte[]) in.data()), in.dims(), OnnxJavaType.UINT8);
            case INT8 -> OnnxTensor.createTensor(env, ByteBuffer.wrap((byte[]) in.data()), in.dims(), OnnxJavaType.INT8);
            default -> throw new IllegalArgumentException(in.dtype().toString());
        };
    }

    /** Runs the model in ONNX Runtime: output name -> values. */
    static Map<String, float[]> runOrt(ModelProto m, List<In> inputs) throws OrtException {
        Map<String, float[]> out = new LinkedHashMap<>();
        try (OrtSession.SessionOptions opts = new OrtSession.SessionOptions()) {
            opts.setOptimizationLevel(OrtSession.SessionOptions.OptLevel.NO_OPT);
            try (OrtSession s = env.createSession(m.toByteArray(), opts)) {
                Map<String, OnnxTensor> feeds = new HashMap<>();
                try {
                    for (In in : inputs) {
                        if (!in.name().isEmpty()) {
                            feeds.put(in.name(), ortTensor(in));
                        }
                    }
                    try (OrtSession.Result r = s.run(feeds)) {
                        for (ValueInfoProto o : m.getGraph().getOutputList()) {
                            OnnxTensor t = (OnnxTensor) r.get(o.getName()).orElseThrow();
                            FloatBuffer fb = t.getFloatBuffer();
                            float[] v = new float[fb.remaining()];
                            fb.get(v);
                            out.put(o.getName(), v);
                        }
                    }
                } finally {
                    feeds.values().forEach(OnnxTensor::close);
                }
            }
        }
        return out;
    }

    /** Runs the model in Cortado: output name -> values. */
    static Map<String, float[]> runCortado(ModelProto m, List<In> inputs) {
        Map<String, float[]> out = new LinkedHashMap<>();
        try (Scope scope = Scope.open(); OnnxModel model = OnnxModel.of(m)) {
            Map<String, Tensor> feeds = new HashMap<>();
            for (In in : inputs) {
                if (!in.name().isEmpty()) {
                    feeds.put(in.name(), cortadoTensor(in));
                }
            }
            for (Map.Entry<String, Tensor> e : model.run(feeds).entrySet()) {
                out.put(e.getKey(), e.getValue().to(DType.FLOAT32).toFloatArray());
            }
        }
        return out;
    }

    /** Runs both and compares every output within abs + rel·|ort|; returns the largest difference. */
    private static double check(double abs, double rel, String domain, String op, List<In> inputs, List<String> outputs,
                                AttributeProto... attrs) throws OrtException {
        ModelProto m = model(domain, op, inputs, outputs, attrs);
        Map<String, float[]> want = runOrt(m, inputs);
        Map<String, float[]> got = runCortado(m, inputs);
        double worst = 0;
        assertEquals(want.keySet(), got.keySet(), op);
        for (String name : want.keySet()) {
            float[] w = want.get(name);
            float[] g = got.get(name);
            assertEquals(w.length, g.length, op + " output " + name + " size");
            for (int k = 0; k < w.length; k++) {
                double d = Math.abs(w[k] - g[k]);
                worst = Math.max(worst, d);
                assertTrue(d <= abs + rel * Math.abs(w[k]), op + " output " + name + " element " + k + ": cortado "
                        + g[k] + ", onnxruntime " + w[k]);
            }
        }
        return worst;
    }

    private static final double ACT = 1e-5;
    private static final double NORM = 1e-4;

    @Test
    void geluFamily() throws OrtException {
        In x = In.f("x", 2, 5, 7);
        In b = In.f("b", 7);
        check(ACT, ACT, MicrosoftOps.DOMAIN, "Gelu", List.of(x), List.of("y"));
        check(ACT, ACT, MicrosoftOps.DOMAIN, "BiasGelu", List.of(x, b), List.of("y"));
        check(ACT, ACT, MicrosoftOps.DOMAIN, "FastGelu", List.of(x), List.of("y"));
        check(ACT, ACT, MicrosoftOps.DOMAIN, "FastGelu", List.of(x, b), List.of("y"));
        check(ACT, ACT, MicrosoftOps.DOMAIN, "QuickGelu", List.of(x), List.of("y"));
        check(ACT, ACT, MicrosoftOps.DOMAIN, "QuickGelu", List.of(x), List.of("y"), f("alpha", 1.3));
    }

    @Test
    void skipLayerNormalization() throws OrtException {
        In x = In.f("x", 2, 3, 16);
        In skip = In.f("skip", 2, 3, 16);
        In gamma = In.f("gamma", 16);
        In beta = In.f("beta", 16);
        In bias = In.f("bias", 16);
        check(NORM, NORM, MicrosoftOps.DOMAIN, "SkipLayerNormalization", List.of(x, skip, gamma, beta, bias),
                List.of("y", "", "", "sum"), f("epsilon", 1e-5));
        check(NORM, NORM, MicrosoftOps.DOMAIN, "SkipLayerNormalization", List.of(x, skip, gamma), List.of("y"));
        // odd hidden size, skip broadcast over the batch
        check(NORM, NORM, MicrosoftOps.DOMAIN, "SkipLayerNormalization",
                List.of(In.f("x", 3, 4, 13), In.f("skip", 1, 4, 13), In.f("gamma", 13), In.f("beta", 13)),
                List.of("y", "", "", "sum"), f("epsilon", 1e-6));
    }

    @Test
    void skipLayerNormalizationStatistics() {
        // ONNX Runtime's CPU kernel leaves the mean / inv_std_var outputs unwritten at inference:
        // checked against a float64 reference instead
        In x = In.f("x", 2, 3, 16);
        In skip = In.f("skip", 2, 3, 16);
        In gamma = In.f("gamma", 16);
        List<In> ins = List.of(x, skip, gamma);
        Map<String, float[]> got = runCortado(model(MicrosoftOps.DOMAIN, "SkipLayerNormalization", ins,
                List.of("y", "mean", "inv_std", "sum"), f("epsilon", 1e-5)), ins);
        float[] xv = (float[]) x.data();
        float[] sv = (float[]) skip.data();
        for (int r = 0; r < 6; r++) {
            double mean = 0;
            for (int k = 0; k < 16; k++) {
                mean += xv[r * 16 + k] + sv[r * 16 + k];
            }
            mean /= 16;
            double var = 0;
            for (int k = 0; k < 16; k++) {
                double d = xv[r * 16 + k] + sv[r * 16 + k] - mean;
                var += d * d;
            }
            var /= 16;
            assertEquals(mean, got.get("mean")[r], 1e-5, "mean of row " + r);
            assertEquals(1 / Math.sqrt(var + 1e-5), got.get("inv_std")[r], 1e-4, "inv_std of row " + r);
        }
    }

    @Test
    void simplifiedLayerNormalizations() throws OrtException {
        In x = In.f("x", 2, 3, 16);
        In skip = In.f("skip", 2, 3, 16);
        In gamma = In.f("gamma", 16);
        In bias = In.f("bias", 16);
        check(NORM, NORM, MicrosoftOps.DOMAIN, "SkipSimplifiedLayerNormalization", List.of(x, skip, gamma, bias),
                List.of("y", "", "", "sum"), f("epsilon", 1e-5));
        check(NORM, NORM, MicrosoftOps.DOMAIN, "SkipSimplifiedLayerNormalization", List.of(x, skip, gamma), List.of("y"));
        // ONNX Runtime declares SimplifiedLayerNormalization in the default domain
        check(NORM, NORM, "", "SimplifiedLayerNormalization", List.of(In.f("x", 2, 5, 11), In.f("scale", 11)),
                List.of("y", "inv_std"), f("epsilon", 1e-5));
    }

    @Test
    void embedLayerNormalization() throws OrtException {
        int[] ids = new int[2 * 7];
        int[] seg = new int[2 * 7];
        int[] mask = new int[2 * 7];
        for (int k = 0; k < ids.length; k++) {
            ids[k] = RND.nextInt(30);
            seg[k] = RND.nextInt(2);
            mask[k] = k % 7 < 3 + 3 * (k / 7) ? 1 : 0;
        }
        In inputIds = new In("ids", DType.INT32, new long[] {2, 7}, ids);
        In segmentIds = new In("seg", DType.INT32, new long[] {2, 7}, seg);
        In words = In.f("words", 30, 16);
        In positions = In.f("pos", 9, 16);
        In segments = In.f("segs", 2, 16);
        In gamma = In.f("gamma", 16);
        In beta = In.f("beta", 16);
        In m = new In("mask", DType.INT32, new long[] {2, 7}, mask);
        List<In> ins = List.of(inputIds, segmentIds, words, positions, segments, gamma, beta, m);
        checkEmbed(ins, List.of("y", "mask_index", "sum"));
        // without segments and mask (BERT models without token types): mask_index is all zeros
        checkEmbed(List.of(inputIds, In.absent(), words, positions, In.absent(), gamma, beta), List.of("y", "mask_index"));
    }

    private static void checkEmbed(List<In> ins, List<String> outputs) throws OrtException {
        ModelProto model = model(MicrosoftOps.DOMAIN, "EmbedLayerNormalization", ins, outputs, f("epsilon", 1e-5));
        model = model.toBuilder().setGraph(model.getGraph().toBuilder()
                .setOutput(1, info("mask_index", DType.INT32, null))).build();
        Map<String, float[]> want = runOrtMixed(model, ins);
        Map<String, float[]> got = runCortado(model, ins);
        for (String name : want.keySet()) {
            float[] w = want.get(name);
            float[] g = got.get(name);
            assertEquals(w.length, g.length, name);
            for (int k = 0; k < w.length; k++) {
                assertEquals(w[k], g[k], NORM + NORM * Math.abs(w[k]), "EmbedLayerNormalization " + name + " element " + k);
            }
        }
        assertEquals(want.keySet(), got.keySet());
    }

    /** {@link #runOrt} where some outputs are int32 (read as floats). */
    private static Map<String, float[]> runOrtMixed(ModelProto m, List<In> inputs) throws OrtException {
        Map<String, float[]> out = new LinkedHashMap<>();
        try (OrtSession.SessionOptions opts = new OrtSession.SessionOptions()) {
            opts.setOptimizationLevel(OrtSession.SessionOptions.OptLevel.NO_OPT);
            try (OrtSession s = env.createSession(m.toByteArray(), opts)) {
                Map<String, OnnxTensor> feeds = new HashMap<>();
                try {
                    for (In in : inputs) {
                        if (!in.name().isEmpty()) {
                            feeds.put(in.name(), ortTensor(in));
                        }
                    }
                    try (OrtSession.Result r = s.run(feeds)) {
                        for (ValueInfoProto o : m.getGraph().getOutputList()) {
                            OnnxTensor t = (OnnxTensor) r.get(o.getName()).orElseThrow();
                            float[] v;
                            if (t.getInfo().type == OnnxJavaType.INT32) {
                                IntBuffer ib = t.getIntBuffer();
                                v = new float[ib.remaining()];
                                for (int k = 0; k < v.length; k++) {
                                    v[k] = ib.get(k);
                                }
                            } else {
                                FloatBuffer fb = t.getFloatBuffer();
                                v = new float[fb.remaining()];
                                fb.get(v);
                            }
                            out.put(o.getName(), v);
                        }
                    }
                } finally {
                    feeds.values().forEach(OnnxTensor::close);
                }
            }
        }
        return out;
    }

    @Test
    void biasAddAgainstFloat64() {
        In x = In.f("x", 2, 3, 8);
        In b = In.f("b", 8);
        In skip = In.f("skip", 2, 3, 8);
        List<In> ins = List.of(x, b, skip);
        float[] got = runCortado(model(MicrosoftOps.DOMAIN, "BiasAdd", ins, List.of("y")), ins).get("y");
        for (int k = 0; k < got.length; k++) {
            double want = (double) ((float[]) x.data())[k] + ((float[]) b.data())[k % 8] + ((float[]) skip.data())[k];
            assertEquals(want, got[k], ACT + ACT * Math.abs(want), "BiasAdd element " + k);
        }
    }

    @Test
    void fusedMatMul() throws OrtException {
        check(NORM, NORM, MicrosoftOps.DOMAIN, "FusedMatMul", List.of(In.f("a", 2, 3, 4), In.f("b", 2, 4, 5)), List.of("y"));
        check(NORM, NORM, MicrosoftOps.DOMAIN, "FusedMatMul", List.of(In.f("a", 2, 4, 3), In.f("b", 2, 5, 4)), List.of("y"),
                i("transA", 1), i("transB", 1), f("alpha", 0.5));
        check(NORM, NORM, MicrosoftOps.DOMAIN, "FusedMatMul", List.of(In.f("a", 3, 7, 6), In.f("b", 6, 5)), List.of("y"),
                i("transB", 0), f("alpha", -1.25));
        check(NORM, NORM, MicrosoftOps.DOMAIN, "FusedMatMul", List.of(In.f("a", 1, 6), In.f("b", 5, 6)), List.of("y"),
                i("transB", 1));
    }

    private static In intMask(String name, int[] v, long... dims) {
        return new In(name, DType.INT32, dims, v);
    }

    @Test
    void attention() throws OrtException {
        In x = In.f("x", 2, 5, 12);
        In w = In.f("w", 12, 36);
        In b = In.f("b", 36);
        AttributeProto heads = i("num_heads", 3);
        check(NORM, NORM, MicrosoftOps.DOMAIN, "Attention", List.of(x, w, b), List.of("y"), heads);
        check(NORM, NORM, MicrosoftOps.DOMAIN, "Attention", List.of(x, w, b, intMask("m", new int[] {5, 3}, 2)),
                List.of("y"), heads);
        // end positions, then start positions
        check(NORM, NORM, MicrosoftOps.DOMAIN, "Attention", List.of(x, w, b, intMask("m", new int[] {4, 5, 1, 0}, 4)),
                List.of("y"), heads);
        int[] raw = new int[2 * 5];
        for (int k = 0; k < raw.length; k++) {
            raw[k] = k % 5 == 0 || RND.nextBoolean() ? 1 : 0;
        }
        check(NORM, NORM, MicrosoftOps.DOMAIN, "Attention", List.of(x, w, b, intMask("m", raw, 2, 5)), List.of("y"), heads);
        int[] raw3 = new int[2 * 5 * 5];
        for (int k = 0; k < raw3.length; k++) {
            raw3[k] = k % 5 == 0 || RND.nextBoolean() ? 1 : 0;
        }
        check(NORM, NORM, MicrosoftOps.DOMAIN, "Attention", List.of(x, w, b, intMask("m", raw3, 2, 5, 5)), List.of("y"), heads);
        check(NORM, NORM, MicrosoftOps.DOMAIN, "Attention", List.of(x, w, b), List.of("y"), heads, i("unidirectional", 1));
        check(NORM, NORM, MicrosoftOps.DOMAIN, "Attention", List.of(x, w, b, In.absent(), In.absent(), In.f("ab", 1, 3, 5, 5)),
                List.of("y"), heads, f("scale", 0.3));
        // unequal v hidden size
        check(NORM, NORM, MicrosoftOps.DOMAIN, "Attention", List.of(x, In.f("w", 12, 30), In.f("b", 30)), List.of("y"),
                heads, ints("qkv_hidden_sizes", 12, 12, 6));
    }

    @Test
    void multiHeadAttention() throws OrtException {
        In q = In.f("q", 2, 4, 12);
        In k = In.f("k", 2, 6, 12);
        In v = In.f("v", 2, 6, 12);
        AttributeProto heads = i("num_heads", 2);
        check(NORM, NORM, MicrosoftOps.DOMAIN, "MultiHeadAttention", List.of(q, k, v), List.of("y"), heads);
        check(NORM, NORM, MicrosoftOps.DOMAIN, "MultiHeadAttention", List.of(q, k, v, In.f("b", 36)), List.of("y"), heads);
        int[] raw = new int[2 * 6];
        for (int j = 0; j < raw.length; j++) {
            raw[j] = j % 6 == 0 || RND.nextBoolean() ? 1 : 0;
        }
        check(NORM, NORM, MicrosoftOps.DOMAIN, "MultiHeadAttention",
                List.of(q, k, v, In.f("b", 36), intMask("m", raw, 2, 6), In.f("ab", 2, 2, 4, 6)), List.of("y"), heads,
                f("scale", 0.2));
    }

    @Test
    void rotaryEmbedding() throws OrtException {
        long[] ids = new long[2 * 5];
        for (int j = 0; j < ids.length; j++) {
            ids[j] = RND.nextInt(16);
        }
        In pos = new In("pos", DType.INT64, new long[] {2, 5}, ids);
        In cos = In.f("cos", 16, 4);
        In sin = In.f("sin", 16, 4);
        In x = In.f("x", 2, 5, 16);
        check(NORM, NORM, MicrosoftOps.DOMAIN, "RotaryEmbedding", List.of(x, pos, cos, sin), List.of("y"), i("num_heads", 2));
        check(NORM, NORM, MicrosoftOps.DOMAIN, "RotaryEmbedding", List.of(x, pos, cos, sin), List.of("y"), i("interleaved", 1));
        check(NORM, NORM, MicrosoftOps.DOMAIN, "RotaryEmbedding",
                List.of(In.f("x", 2, 2, 5, 8), new In("pos", DType.INT64, new long[] {1}, new long[] {3}), cos, sin),
                List.of("y"));
        // a partial rotary dimension (4 of 8 features per head)
        check(NORM, NORM, MicrosoftOps.DOMAIN, "RotaryEmbedding", List.of(x, pos, In.f("cos", 16, 2), In.f("sin", 16, 2)),
                List.of("y"), i("num_heads", 2), i("rotary_embedding_dim", 4));
    }

    private static byte[] bytes(int n, int lo, int hi) {
        byte[] b = new byte[n];
        for (int k = 0; k < n; k++) {
            b[k] = (byte) (lo + RND.nextInt(hi - lo + 1));
        }
        return b;
    }

    private static In positive(String name, long... dims) {
        float[] v = new float[(int) count(dims)];
        for (int k = 0; k < v.length; k++) {
            v[k] = 0.01f + RND.nextFloat() * 0.05f;
        }
        return new In(name, DType.FLOAT32, dims, v);
    }

    @Test
    void matMulIntegerToFloat() throws OrtException {
        In a = new In("a", DType.UINT8, new long[] {2, 3, 8}, bytes(48, 0, 255));
        In b = new In("b", DType.INT8, new long[] {8, 5}, bytes(40, -128, 127));
        In as = positive("as", 1);
        In bs = positive("bs", 5);
        In az = new In("az", DType.UINT8, new long[] {1}, bytes(1, 100, 150));
        In bz = new In("bz", DType.INT8, new long[] {5}, bytes(5, -5, 5));
        check(ACT, ACT, MicrosoftOps.DOMAIN, "MatMulIntegerToFloat", List.of(a, b, as, bs), List.of("y"));
        check(ACT, ACT, MicrosoftOps.DOMAIN, "MatMulIntegerToFloat", List.of(a, b, as, bs, az, bz, In.f("bias", 5)),
                List.of("y"));
        check(ACT, ACT, MicrosoftOps.DOMAIN, "MatMulIntegerToFloat", List.of(a, b, as, positive("bs", 1)), List.of("y"));
    }

    @Test
    void dynamicQuantizeMatMul() throws OrtException {
        In a = In.f("a", 2, 3, 8);
        In b = new In("b", DType.INT8, new long[] {8, 5}, bytes(40, -128, 127));
        In bs = positive("bs", 5);
        ModelProto m = model(MicrosoftOps.DOMAIN, "DynamicQuantizeMatMul",
                List.of(a, b, bs, In.absent(), In.f("bias", 5)), List.of("y"));
        List<In> ins = List.of(a, b, bs, In.f("bias", 5));
        float[] want = runOrt(m, List.of(a, b, bs, ins.get(3)).stream().toList()).get("y");
        float[] got = runCortado(m, ins).get("y");
        double range = 0;
        for (float w : want) {
            range = Math.max(range, Math.abs(w));
        }
        for (int k = 0; k < want.length; k++) {
            assertEquals(want[k], got[k], 0.02 * range, "DynamicQuantizeMatMul element " + k);
        }
        // with a per-column zero point too (ONNX Runtime requires int8 B then)
        In bz = new In("bz", DType.INT8, new long[] {5}, bytes(5, -3, 3));
        List<In> ins2 = List.of(a, b, bs, bz);
        ModelProto m2 = model(MicrosoftOps.DOMAIN, "DynamicQuantizeMatMul", ins2, List.of("y"));
        float[] want2 = runOrt(m2, ins2).get("y");
        float[] got2 = runCortado(m2, ins2).get("y");
        for (int k = 0; k < want2.length; k++) {
            assertEquals(want2[k], got2[k], 0.02 * range + 1e-3, "DynamicQuantizeMatMul (zero point) element " + k);
        }
    }

    @Test
    void unsupportedFormsFailAtLoad() {
        ModelProto m = model(MicrosoftOps.DOMAIN, "Attention", List.of(In.f("x", 1, 2, 6), In.f("w", 6, 18)), List.of("y"),
                i("num_heads", 2), i("do_rotary", 1));
        UnsupportedOnnxOpException e = assertThrows(UnsupportedOnnxOpException.class, () -> OnnxModel.of(m).close());
        assertEquals("Attention", e.opType());
        assertEquals(MicrosoftOps.DOMAIN, e.domain());
        assertEquals(1, e.opset());
        assertEquals("node_Attention", e.nodeName());
        assertTrue(e.getMessage().contains("do_rotary"), e.getMessage());

        ModelProto mask4 = model(MicrosoftOps.DOMAIN, "Attention", List.of(In.f("x", 1, 2, 6), In.f("w", 6, 18), In.f("b", 18),
                new In("m", DType.INT32, new long[] {1, 1, 2, 2}, new int[4])), List.of("y"), i("num_heads", 2));
        e = assertThrows(UnsupportedOnnxOpException.class, () -> OnnxModel.of(mask4).close());
        assertTrue(e.getMessage().contains("mask_index") && e.getMessage().contains("rank 4"), e.getMessage());

        ModelProto fused = model(MicrosoftOps.DOMAIN, "FusedMatMul", List.of(In.f("a", 2, 3, 4), In.f("b", 2, 4, 5)),
                List.of("y"), i("transBatchA", 1));
        e = assertThrows(UnsupportedOnnxOpException.class, () -> OnnxModel.of(fused).close());
        assertTrue(e.getMessage().contains("transBatchA") && e.getMessage().contains("com.microsoft"), e.getMessage());

        ModelProto past = model(MicrosoftOps.DOMAIN, "MultiHeadAttention", List.of(In.f("q", 1, 2, 4), In.f("k", 1, 2, 4),
                In.f("v", 1, 2, 4), In.absent(), In.absent(), In.absent(), In.f("pk", 1, 2, 2, 2)), List.of("y"),
                i("num_heads", 2));
        e = assertThrows(UnsupportedOnnxOpException.class, () -> OnnxModel.of(past).close());
        assertTrue(e.getMessage().contains("past_key"), e.getMessage());

        ModelProto unknown = model(MicrosoftOps.DOMAIN, "GroupQueryAttention", List.of(In.f("q", 1, 2, 4)), List.of("y"));
        e = assertThrows(UnsupportedOnnxOpException.class, () -> OnnxModel.of(unknown).close());
        assertEquals("GroupQueryAttention", e.opType());
        assertTrue(e.getMessage().contains("com.microsoft") && e.getMessage().contains("node_GroupQueryAttention"),
                e.getMessage());
    }

    @Test
    void badShapesAreClearErrors() {
        List<In> ins = List.of(In.f("x", 2, 5, 12), In.f("w", 12, 36), In.f("b", 36), intMask("m", new int[3], 3));
        ModelProto m = model(MicrosoftOps.DOMAIN, "Attention", ins, List.of("y"), i("num_heads", 3));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> runCortado(m, ins));
        assertTrue(e.getMessage().contains("Attention") && e.getMessage().contains("mask"), e.getMessage());
        List<In> ins2 = new ArrayList<>(List.of(In.f("x", 2, 5, 12), In.f("w", 12, 36), In.f("b", 35)));
        ModelProto m2 = model(MicrosoftOps.DOMAIN, "Attention", ins2, List.of("y"), i("num_heads", 3));
        e = assertThrows(IllegalArgumentException.class, () -> runCortado(m2, ins2));
        assertTrue(e.getMessage().contains("bias"), e.getMessage());
    }
}
