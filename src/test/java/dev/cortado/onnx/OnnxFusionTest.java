package dev.cortado.onnx;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
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
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * The load-time fusions of {@link OnnxFusion}: each pattern as the exporters write it is fused
 * (the running graph holds the fused node) and computes its float64 reference; the near misses
 * (a wrong constant, a wrong axis, an intermediate value read elsewhere, a weight a caller may
 * feed) are left alone and still compute the graph as written. Tolerances: float32 results
 * within 2e-6 absolute + 2e-6 relative of float64 (a few roundings of O(1) values); the int8 GEMM
 * exactly.
 */
class OnnxFusionTest {
    private static final String FUSED = OnnxFusion.DOMAIN + ".";
    private static final Device CPU = Device.CPU;

    // ------------------------------------------------------------------ model building

    private static ValueInfoProto value(String name, int type, long... dims) {
        TypeProto.Tensor.Builder t = TypeProto.Tensor.newBuilder().setElemType(type);
        TensorShapeProto.Builder s = TensorShapeProto.newBuilder();
        for (long d : dims) {
            s.addDim(TensorShapeProto.Dimension.newBuilder().setDimValue(d));
        }
        return ValueInfoProto.newBuilder().setName(name).setType(TypeProto.newBuilder().setTensorType(t.setShape(s)))
                .build();
    }

    private static ModelProto model(GraphProto.Builder graph, int opset) {
        return ModelProto.newBuilder().setIrVersion(8)
                .addOpsetImport(OperatorSetIdProto.newBuilder().setDomain("").setVersion(opset))
                .setGraph(graph).build();
    }

    private static NodeProto node(String op, List<String> in, String out, AttributeProto... attrs) {
        return NodeProto.newBuilder().setOpType(op).addAllInput(in).addOutput(out).addAllAttribute(List.of(attrs)).build();
    }

    private static AttributeProto ints(String name, long... v) {
        AttributeProto.Builder b = AttributeProto.newBuilder().setName(name).setType(AttributeProto.AttributeType.INTS);
        for (long x : v) {
            b.addInts(x);
        }
        return b.build();
    }

    private static AttributeProto intAttr(String name, long v) {
        return AttributeProto.newBuilder().setName(name).setType(AttributeProto.AttributeType.INT).setI(v).build();
    }

    private static TensorProto floats(String name, float[] v, long... dims) {
        ByteBuffer b = ByteBuffer.allocate(4 * v.length).order(ByteOrder.LITTLE_ENDIAN);
        for (float f : v) {
            b.putFloat(f);
        }
        TensorProto.Builder t = TensorProto.newBuilder().setName(name).setDataType(OnnxTensors.FLOAT)
                .setRawData(ByteString.copyFrom(b.array()));
        for (long d : dims) {
            t.addDims(d);
        }
        return t.build();
    }

    private static TensorProto scalar(String name, double v) {
        return floats(name, new float[] {(float) v});
    }

    private static TensorProto int8s(String name, byte[] v, long... dims) {
        TensorProto.Builder t = TensorProto.newBuilder().setName(name).setDataType(OnnxTensors.INT8)
                .setRawData(ByteString.copyFrom(v));
        for (long d : dims) {
            t.addDims(d);
        }
        return t.build();
    }

    private static float[] gaussian(Random r, int n, double limit) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) Math.max(-limit, Math.min(limit, 1.5 * r.nextGaussian()));
        }
        return v;
    }

    /** Runs {@code m} (fused, the default) and returns its output {@code name} as doubles. */
    private static double[] run(OnnxModel m, String name, Map<String, float[]> feeds, Map<String, long[]> dims) {
        Map<String, Tensor> in = new LinkedHashMap<>();
        try {
            for (var e : feeds.entrySet()) {
                in.put(e.getKey(), Tensor.of(e.getValue(), CPU, dims.get(e.getKey())));
            }
            Map<String, Tensor> out = m.run(in);
            try {
                float[] f = out.get(name).toFloatArray();
                double[] d = new double[f.length];
                for (int i = 0; i < f.length; i++) {
                    d[i] = f[i];
                }
                return d;
            } finally {
                out.values().forEach(Tensor::close);
            }
        } finally {
            in.values().forEach(Tensor::close);
        }
    }

    private static void assertClose(double[] want, double[] got, double tol, String what) {
        assertEquals(want.length, got.length, what + ": sizes");
        for (int i = 0; i < want.length; i++) {
            double lim = tol + tol * Math.abs(want[i]);
            if (!(Math.abs(want[i] - got[i]) <= lim)) {
                throw new AssertionError(what + ": element " + i + " is " + got[i] + ", want " + want[i] + " (within "
                        + lim + ")");
            }
        }
    }

    /** n int8 values, uniform over [-128, 127]. */
    private static byte[] randomInt8(Random r, int n) {
        byte[] b = new byte[n];
        for (int i = 0; i < n; i++) {
            b[i] = (byte) (r.nextInt(256) - 128);
        }
        return b;
    }

    /** n uint8 values (as ints), uniform over [0, 255]. */
    private static int[] randomUint8(Random r, int n) {
        int[] a = new int[n];
        for (int i = 0; i < n; i++) {
            a[i] = r.nextInt(256);
        }
        return a;
    }

    private static long fusedCount(OnnxModel m, String op) {
        return m.runningOps().stream().filter(o -> o.equals(FUSED + op)).count();
    }

    // ------------------------------------------------------------------ GELU

    /**
     * erf in double: the Maclaurin series for |z| <= 3 (the alternating terms lose < 1e-11), else
     * 1 - erfc(|z|) (signed) with erfc's asymptotic series to z^-10 (truncation < 1e-8 relative).
     */
    private static double erf(double z) {
        if (Math.abs(z) > 3) {
            double a = Math.abs(z);
            double u = 1 / (2 * a * a);
            double series = 1 - u + 3 * u * u - 15 * u * u * u + 105 * u * u * u * u;
            double erfc = Math.exp(-a * a) / (a * Math.sqrt(Math.PI)) * series;
            return Math.signum(z) * (1 - erfc);
        }
        double sum = 0;
        double term = z;
        for (int n = 0; n < 200; n++) {
            sum += term / (2 * n + 1);
            term *= -z * z / (n + 1);
        }
        return 2 / Math.sqrt(Math.PI) * sum;
    }

    /**
     * x [4, 37] -> y: the exported erf GELU. {@code form} 0: ((x * (1 + erf(x / sqrt2))) * 0.5);
     * 1: ((x * 0.5) * (1 + erf(x * (1/sqrt2)))). {@code half} is the constant that should be 0.5;
     * {@code erfOut} also makes the Erf output a graph output.
     */
    private static ModelProto geluModel(int form, double half, boolean erfOut) {
        GraphProto.Builder g = GraphProto.newBuilder().setName("gelu")
                .addInput(value("x", OnnxTensors.FLOAT, 4, 37)).addOutput(value("y", OnnxTensors.FLOAT, 4, 37))
                .addInitializer(scalar("one", 1)).addInitializer(scalar("half", half))
                .addInitializer(scalar("c", form == 0 ? Math.sqrt(2) : Math.sqrt(0.5)));
        g.addNode(node(form == 0 ? "Div" : "Mul", List.of("x", "c"), "s"));
        g.addNode(node("Erf", List.of("s"), "e"));
        g.addNode(node("Add", List.of("one", "e"), "a"));
        if (form == 0) {
            g.addNode(node("Mul", List.of("x", "a"), "m"));
            g.addNode(node("Mul", List.of("m", "half"), "y"));
        } else {
            g.addNode(node("Mul", List.of("half", "x"), "m"));
            g.addNode(node("Mul", List.of("a", "m"), "y"));
        }
        if (erfOut) {
            g.addOutput(value("e", OnnxTensors.FLOAT, 4, 37));
        }
        return model(g, 13);
    }

    @Test
    void geluChainsBecomeOneGelu() {
        Random r = new Random(11);
        float[] x = gaussian(r, 4 * 37, 4);
        double[] want = new double[x.length];
        for (int i = 0; i < x.length; i++) {
            want[i] = 0.5 * x[i] * (1 + erf(x[i] / Math.sqrt(2)));
        }
        for (int form = 0; form < 2; form++) {
            try (OnnxModel m = OnnxModel.of(geluModel(form, 0.5, false), null, CPU)) {
                assertEquals(List.of(FUSED + "Gelu"), m.runningOps(), "form " + form);
                assertClose(want, run(m, "y", Map.of("x", x), Map.of("x", new long[] {4, 37})), 2e-6, "gelu form " + form);
            }
        }
    }

    @Test
    void nearGeluChainsStayAsWritten() {
        Random r = new Random(12);
        float[] x = gaussian(r, 4 * 37, 4);
        // 0.6 instead of 0.5: not a GELU
        try (OnnxModel m = OnnxModel.of(geluModel(0, 0.6, false), null, CPU)) {
            assertEquals(0, fusedCount(m, "Gelu"), m.runningOps().toString());
            double[] want = new double[x.length];
            for (int i = 0; i < x.length; i++) {
                want[i] = 0.6 * x[i] * (1 + erf(x[i] / Math.sqrt(2)));
            }
            assertClose(want, run(m, "y", Map.of("x", x), Map.of("x", new long[] {4, 37})), 2e-6, "0.6 x Phi");
        }
        // the Erf output is read by the caller too: the chain must stay
        try (OnnxModel m = OnnxModel.of(geluModel(1, 0.5, true), null, CPU)) {
            assertEquals(0, fusedCount(m, "Gelu"), m.runningOps().toString());
            double[] want = new double[x.length];
            for (int i = 0; i < x.length; i++) {
                want[i] = erf(x[i] * Math.sqrt(0.5));
            }
            assertClose(want, run(m, "e", Map.of("x", x), Map.of("x", new long[] {4, 37})), 2e-6, "erf output");
        }
    }

    /** x [4, 37] -> y = GELU(Add(x, bias [37])); {@code sumOut}: the Add's output is a graph output too. */
    private static ModelProto biasGeluModel(float[] bias, boolean sumOut) {
        GraphProto.Builder g = GraphProto.newBuilder().setName("bias_gelu")
                .addInput(value("x", OnnxTensors.FLOAT, 4, 37)).addOutput(value("y", OnnxTensors.FLOAT, 4, 37))
                .addInitializer(floats("bias", bias, 37)).addInitializer(scalar("one", 1))
                .addInitializer(scalar("half", 0.5)).addInitializer(scalar("c", Math.sqrt(2)));
        g.addNode(node("Add", List.of("x", "bias"), "h"));
        g.addNode(node("Div", List.of("h", "c"), "s"));
        g.addNode(node("Erf", List.of("s"), "e"));
        g.addNode(node("Add", List.of("e", "one"), "a"));
        g.addNode(node("Mul", List.of("h", "a"), "m"));
        g.addNode(node("Mul", List.of("m", "half"), "y"));
        if (sumOut) {
            g.addOutput(value("h", OnnxTensors.FLOAT, 4, 37));
        }
        return model(g, 13);
    }

    @Test
    void theBiasAddJoinsTheGeluUnlessItIsReadElsewhere() {
        Random r = new Random(18);
        float[] x = gaussian(r, 4 * 37, 3);
        float[] bias = gaussian(r, 37, 1);
        double[] want = new double[x.length];
        for (int i = 0; i < x.length; i++) {
            double h = (double) (x[i] + bias[i % 37]); // the float32 sum, as the kernel rounds it
            want[i] = 0.5 * h * (1 + erf(h / Math.sqrt(2)));
        }
        Map<String, long[]> dims = Map.of("x", new long[] {4, 37});
        try (OnnxModel m = OnnxModel.of(biasGeluModel(bias, false), null, CPU)) {
            assertEquals(List.of(FUSED + "BiasGelu"), m.runningOps());
            assertClose(want, run(m, "y", Map.of("x", x), dims), 2e-6, "bias + gelu");
        }
        try (OnnxModel m = OnnxModel.of(biasGeluModel(bias, true), null, CPU)) {
            assertEquals(List.of("Add", FUSED + "Gelu"), m.runningOps());
            assertClose(want, run(m, "y", Map.of("x", x), dims), 2e-6, "gelu after a read Add");
        }
    }

    /**
     * The float32 GELU of the fused pass against the float64 one (libm's double erfc) over
     * [-12, 12] and the special values: within 8 ulp of the float32-rounded reference (the
     * kernel's comment states ~6 at worst), through the AVX-512 or AVX2 loop and its scalar
     * tail (an odd length), and a strided view.
     */
    @Test
    void float32GeluIsWithinAFewUlpOfTheFloat64One() {
        int n = 240_007;
        float[] x = new float[n];
        for (int i = 0; i < n; i++) {
            x[i] = (float) (-12 + 24.0 * i / (n - 1));
        }
        x[0] = Float.POSITIVE_INFINITY;
        x[1] = Float.NaN;
        x[2] = 0f;
        x[3] = -0f;
        x[4] = -30f;
        x[5] = 30f;
        try (Tensor xt = Tensor.of(x, CPU, n);
             Tensor y = OnnxFusion.biasGelu(xt, null);
             Tensor x64 = xt.to(DType.FLOAT64);
             Tensor ref = dev.cortado.ops.Elementwise.gelu(x64);
             Tensor wide = Tensor.of(java.util.Arrays.copyOf(x, n / 7 * 7), CPU, n / 7, 7);
             Tensor view = wide.narrow(1, 2, 3);
             Tensor yv = OnnxFusion.biasGelu(view, null);
             Tensor view64 = view.to(DType.FLOAT64);
             Tensor refv = dev.cortado.ops.Elementwise.gelu(view64)) {
            float[] got = y.toFloatArray();
            double[] want = ref.toDoubleArray();
            assertEquals(Float.POSITIVE_INFINITY, got[0]);
            assertTrue(Float.isNaN(got[1]));
            assertEquals(0f, got[2]);
            assertEquals(0f, Math.abs(got[4]));
            assertEquals(30f, got[5]);
            double worst = 0;
            for (int i = 6; i < n; i++) {
                float w = (float) want[i];
                double ulp = Math.ulp(Math.max(Math.abs(w), Float.MIN_NORMAL));
                double e = Math.abs(got[i] - want[i]) / ulp;
                worst = Math.max(worst, e);
                if (!(e <= 8)) {
                    throw new AssertionError("gelu(" + x[i] + ") = " + got[i] + ", float64 " + want[i] + ": " + e + " ulp");
                }
            }
            assertTrue(worst > 0, "an exact match everywhere would mean the float64 path ran");
            assertClose(refv.toDoubleArray(), toDoubles(yv.toFloatArray()), 1e-6, "strided view");
        }
    }

    private static double[] toDoubles(float[] f) {
        double[] d = new double[f.length];
        for (int i = 0; i < f.length; i++) {
            d[i] = f[i];
        }
        return d;
    }

    /**
     * x [2, 3, 5] -> z = MatMul(x, w [5, 4]) + bias [4]; {@code gelu} adds the erf GELU after it;
     * {@code wFed}: w is a graph input (no constant).
     */
    private static ModelProto denseModel(float[] w, float[] bias, boolean gelu, boolean wFed) {
        return denseModel(w, bias, gelu, wFed, new long[] {2, 3, 5}, 4);
    }

    /** x of sizes {@code xDims} (last k) times w [k, n], plus bias [n] (none when null), then the GELU if asked. */
    private static ModelProto denseModel(float[] w, float[] bias, boolean gelu, boolean wFed, long[] xDims, long n) {
        long k = xDims[xDims.length - 1];
        long[] yDims = xDims.clone();
        yDims[yDims.length - 1] = n;
        GraphProto.Builder g = GraphProto.newBuilder().setName("dense")
                .addInput(value("x", OnnxTensors.FLOAT, xDims)).addOutput(value(gelu ? "y" : "z", OnnxTensors.FLOAT, yDims));
        if (wFed) {
            g.addInput(value("w", OnnxTensors.FLOAT, k, n));
        } else {
            g.addInitializer(floats("w", w, k, n));
        }
        if (bias == null) {
            g.addNode(node("MatMul", List.of("x", "w"), "z"));
            return model(g, 13);
        }
        g.addInitializer(floats("bias", bias, n));
        g.addNode(node("MatMul", List.of("x", "w"), "mm"));
        g.addNode(node("Add", List.of("bias", "mm"), "z"));
        if (gelu) {
            g.addInitializer(scalar("one", 1)).addInitializer(scalar("half", 0.5)).addInitializer(scalar("c", Math.sqrt(2)));
            g.addNode(node("Div", List.of("z", "c"), "s"));
            g.addNode(node("Erf", List.of("s"), "e"));
            g.addNode(node("Add", List.of("e", "one"), "a"));
            g.addNode(node("Mul", List.of("z", "a"), "m"));
            g.addNode(node("Mul", List.of("m", "half"), "y"));
        }
        return model(g, 13);
    }

    @Test
    void denseLayersBecomeOneGemmWithTheBias() {
        Random r = new Random(20);
        float[] x = gaussian(r, 30, 3);
        float[] w = gaussian(r, 20, 3);
        float[] bias = gaussian(r, 4, 3);
        double[] want = new double[24];
        double[] wantGelu = new double[24];
        for (int i = 0; i < 6; i++) {
            for (int j = 0; j < 4; j++) {
                double acc = bias[j];
                for (int k = 0; k < 5; k++) {
                    acc += (double) x[i * 5 + k] * w[k * 4 + j];
                }
                want[i * 4 + j] = acc;
                wantGelu[i * 4 + j] = 0.5 * acc * (1 + erf(acc / Math.sqrt(2)));
            }
        }
        Map<String, long[]> dims = Map.of("x", new long[] {2, 3, 5}, "w", new long[] {5, 4});
        try (OnnxModel m = OnnxModel.of(denseModel(w, bias, false, false), null, CPU)) {
            assertEquals(List.of(FUSED + "MatMulBias"), m.runningOps());
            assertClose(want, run(m, "z", Map.of("x", x), dims), 1e-5, "x @ w + bias");
        }
        // w fed by the caller: not a constant weight, the two ops stay
        try (OnnxModel m = OnnxModel.of(denseModel(w, bias, false, true), null, CPU)) {
            assertEquals(List.of("MatMul", "Add"), m.runningOps());
            assertClose(want, run(m, "z", Map.of("x", x, "w", w), dims), 1e-5, "x @ fed w + bias");
        }
        // before a GELU the bias joins the GELU pass instead
        try (OnnxModel m = OnnxModel.of(denseModel(w, bias, true, false), null, CPU)) {
            assertEquals(List.of(FUSED + "PackedMatMul", FUSED + "BiasGelu"), m.runningOps());
            assertClose(wantGelu, run(m, "y", Map.of("x", x), dims), 1e-5, "gelu(x @ w + bias)");
        }
    }

    /**
     * The packed float32 GEMM behind MatMulBias and PackedMatMul, against float64 on sizes that
     * are no multiple of its 12 x 32 register tile: rows 1, 13, 111; k 1, 70; n 1, 45, 97; x of
     * rank 1, 2 and 3. float32 tolerance: 1e-5 relative to the sum of |x w| terms plus |bias|.
     */
    @Test
    void constantFloat32WeightsArePackedOnceForAnyRowCount() {
        Random r = new Random(23);
        long[][] xShapes = {{70}, {1, 70}, {13, 70}, {3, 37, 70}, {2, 1}, {111, 1}};
        for (long[] xDims : xShapes) {
            for (long n : new long[] {1, 45, 97}) {
                for (boolean biased : new boolean[] {false, true}) {
                    int k = (int) xDims[xDims.length - 1];
                    int rows = 1;
                    for (int i = 0; i < xDims.length - 1; i++) {
                        rows *= (int) xDims[i];
                    }
                    float[] x = gaussian(r, rows * k, 1);
                    float[] w = gaussian(r, (int) (k * n), 1);
                    float[] bias = biased ? gaussian(r, (int) n, 1) : null;
                    double[] want = new double[(int) (rows * n)];
                    double[] scale = new double[want.length];
                    for (int i = 0; i < rows; i++) {
                        for (int j = 0; j < n; j++) {
                            double acc = biased ? bias[j] : 0;
                            double mag = biased ? Math.abs(bias[j]) : 0;
                            for (int q = 0; q < k; q++) {
                                double t = (double) x[i * k + q] * w[(int) (q * n + j)];
                                acc += t;
                                mag += Math.abs(t);
                            }
                            want[(int) (i * n + j)] = acc;
                            scale[(int) (i * n + j)] = mag;
                        }
                    }
                    String what = "x " + Arrays.toString(xDims) + " @ w [" + k + ", " + n + "]" + (biased ? " + bias" : "");
                    try (OnnxModel m = OnnxModel.of(denseModel(w, bias, false, false, xDims, n), null, CPU)) {
                        assertEquals(List.of(FUSED + (biased ? "MatMulBias" : "PackedMatMul")), m.runningOps(), what);
                        assertEquals(1, m.resources().size(), what + ": one packed weight");
                        OnnxFusion.PackedMatMulWeights packer = (OnnxFusion.PackedMatMulWeights) m.resources().get(0);
                        assertFalse(packer.isPacked(), what + ": packed at the first run, not at load");
                        for (int rep = 0; rep < 2; rep++) { // the packed weight serves every run
                            double[] got = run(m, "z", Map.of("x", x), Map.of("x", xDims));
                            assertEquals(want.length, got.length, what);
                            for (int i = 0; i < want.length; i++) {
                                if (!(Math.abs(got[i] - want[i]) <= 1e-5 * scale[i] + 1e-6)) {
                                    throw new AssertionError(what + ": element " + i + " is " + got[i] + ", want " + want[i]);
                                }
                            }
                            assertTrue(packer.isPacked(), what + ": run " + rep + " used the packed weight");
                        }
                    }
                }
            }
        }
    }

    // ------------------------------------------------------------------ LayerNorm

    /**
     * x [2, 5, 24] -> y: LayerNorm written out over {@code axis}, epsilon 1e-3, with gamma and
     * beta; opset 13 (axes an attribute) or 18 (axes an input); {@code mulSquare}: Mul(d, d)
     * instead of Pow(d, 2).
     */
    private static ModelProto layerNormModel(int opset, long axis, boolean mulSquare, float[] gamma, float[] beta) {
        GraphProto.Builder g = GraphProto.newBuilder().setName("ln")
                .addInput(value("x", OnnxTensors.FLOAT, 2, 5, 24)).addOutput(value("y", OnnxTensors.FLOAT, 2, 5, 24))
                .addInitializer(scalar("two", 2)).addInitializer(scalar("eps", 1e-3))
                .addInitializer(floats("gamma", gamma, 24)).addInitializer(floats("beta", beta, 24));
        List<String> mean1 = new ArrayList<>(List.of("x"));
        List<String> mean2 = new ArrayList<>(List.of("sq"));
        AttributeProto[] axes = {};
        if (opset >= 18) {
            g.addInitializer(TensorProto.newBuilder().setName("axes").setDataType(OnnxTensors.INT64).addDims(1)
                    .addInt64Data(axis));
            mean1.add("axes");
            mean2.add("axes");
        } else {
            axes = new AttributeProto[] {ints("axes", axis)};
        }
        g.addNode(node("ReduceMean", mean1, "mu", axes));
        g.addNode(node("Sub", List.of("x", "mu"), "d"));
        g.addNode(mulSquare ? node("Mul", List.of("d", "d"), "sq") : node("Pow", List.of("d", "two"), "sq"));
        g.addNode(node("ReduceMean", mean2, "var", axes));
        g.addNode(node("Add", List.of("var", "eps"), "ve"));
        g.addNode(node("Sqrt", List.of("ve"), "sd"));
        g.addNode(node("Div", List.of("d", "sd"), "n"));
        g.addNode(node("Mul", List.of("n", "gamma"), "ng"));
        g.addNode(node("Add", List.of("beta", "ng"), "y"));
        return model(g, opset);
    }

    private static double[] layerNormReference(float[] x, float[] gamma, float[] beta, int rows, int cols, double eps) {
        double[] y = new double[x.length];
        for (int r = 0; r < rows; r++) {
            double mean = 0;
            for (int c = 0; c < cols; c++) {
                mean += x[r * cols + c];
            }
            mean /= cols;
            double var = 0;
            for (int c = 0; c < cols; c++) {
                double d = x[r * cols + c] - mean;
                var += d * d;
            }
            var /= cols;
            for (int c = 0; c < cols; c++) {
                y[r * cols + c] = (x[r * cols + c] - mean) / Math.sqrt(var + eps) * gamma[c] + beta[c];
            }
        }
        return y;
    }

    @Test
    void layerNormChainsBecomeOneLayerNorm() {
        Random r = new Random(13);
        float[] x = gaussian(r, 2 * 5 * 24, 6);
        for (int i = 0; i < x.length; i++) {
            x[i] += 3; // a mean far from 0: a one-pass variance would lose digits
        }
        float[] gamma = gaussian(r, 24, 3);
        float[] beta = gaussian(r, 24, 3);
        double[] want = layerNormReference(x, gamma, beta, 10, 24, 1e-3);
        Map<String, long[]> dims = Map.of("x", new long[] {2, 5, 24});
        for (int opset : new int[] {13, 18}) {
            for (boolean mulSquare : new boolean[] {false, true}) {
                try (OnnxModel m = OnnxModel.of(layerNormModel(opset, -1, mulSquare, gamma, beta), null, CPU)) {
                    assertEquals(List.of(FUSED + "LayerNorm"), m.runningOps(), "opset " + opset);
                    assertClose(want, run(m, "y", Map.of("x", x), dims), 2e-6, "layer norm, opset " + opset
                            + (mulSquare ? ", Mul(d, d)" : ", Pow(d, 2)"));
                }
            }
        }
    }

    @Test
    void layerNormOverAnotherAxisStaysAsWritten() {
        Random r = new Random(14);
        float[] x = gaussian(r, 2 * 5 * 24, 6);
        float[] gamma = gaussian(r, 24, 3);
        float[] beta = gaussian(r, 24, 3);
        // normalized over axis 1 (length 5), gamma and beta still along the last axis
        try (OnnxModel m = OnnxModel.of(layerNormModel(13, 1, false, gamma, beta), null, CPU)) {
            assertEquals(0, fusedCount(m, "LayerNorm"), m.runningOps().toString());
            double[] want = new double[x.length];
            for (int b = 0; b < 2; b++) {
                for (int c = 0; c < 24; c++) {
                    double mean = 0;
                    double var = 0;
                    for (int s = 0; s < 5; s++) {
                        mean += x[(b * 5 + s) * 24 + c] / 5.0;
                    }
                    for (int s = 0; s < 5; s++) {
                        double d = x[(b * 5 + s) * 24 + c] - mean;
                        var += d * d / 5;
                    }
                    for (int s = 0; s < 5; s++) {
                        int i = (b * 5 + s) * 24 + c;
                        want[i] = (x[i] - mean) / Math.sqrt(var + 1e-3) * gamma[c] + beta[c];
                    }
                }
            }
            assertClose(want, run(m, "y", Map.of("x", x), Map.of("x", new long[] {2, 5, 24})), 2e-6, "axis 1");
        }
    }

    // ------------------------------------------------------------------ attention

    /**
     * q [2, 3, 5, 8], k [2, 3, 7, 8], v [2, 3, 7, 6], mask [2, 1, 1, 7] -> y [2, 3, 5, 6]:
     * Softmax(MatMul(q, Transpose(k)) / sqrt 8 + mask, {@code axis}) @ v; {@code scoresOut} also
     * makes the scores a graph output.
     */
    private static ModelProto attentionModel(long axis, boolean scoresOut) {
        GraphProto.Builder g = GraphProto.newBuilder().setName("attention")
                .addInput(value("q", OnnxTensors.FLOAT, 2, 3, 5, 8)).addInput(value("k", OnnxTensors.FLOAT, 2, 3, 7, 8))
                .addInput(value("v", OnnxTensors.FLOAT, 2, 3, 7, 6)).addInput(value("mask", OnnxTensors.FLOAT, 2, 1, 1, 7))
                .addOutput(value("y", OnnxTensors.FLOAT, 2, 3, 5, 6)).addInitializer(scalar("c", Math.sqrt(8)));
        g.addNode(node("Transpose", List.of("k"), "kT", ints("perm", 0, 1, 3, 2)));
        g.addNode(node("MatMul", List.of("q", "kT"), "s"));
        g.addNode(node("Div", List.of("s", "c"), "sc"));
        g.addNode(node("Add", List.of("sc", "mask"), "sm"));
        g.addNode(node("Softmax", List.of("sm"), "p", intAttr("axis", axis)));
        g.addNode(node("MatMul", List.of("p", "v"), "y"));
        if (scoresOut) {
            g.addOutput(value("s", OnnxTensors.FLOAT, 2, 3, 5, 7));
        }
        return model(g, 13);
    }

    private static double[] attentionReference(float[] q, float[] k, float[] v, float[] mask, int softmaxAxis) {
        int b = 2, h = 3, lq = 5, lk = 7, d = 8, dv = 6;
        double[] s = new double[b * h * lq * lk];
        for (int bi = 0; bi < b; bi++) {
            for (int hi = 0; hi < h; hi++) {
                for (int i = 0; i < lq; i++) {
                    for (int j = 0; j < lk; j++) {
                        double dot = 0;
                        for (int f = 0; f < d; f++) {
                            dot += (double) q[((bi * h + hi) * lq + i) * d + f] * k[((bi * h + hi) * lk + j) * d + f];
                        }
                        s[((bi * h + hi) * lq + i) * lk + j] = dot / Math.sqrt(8) + mask[bi * lk + j];
                    }
                }
            }
        }
        double[] p = new double[s.length];
        for (int bi = 0; bi < b; bi++) {
            for (int hi = 0; hi < h; hi++) {
                if (softmaxAxis == 3) {
                    for (int i = 0; i < lq; i++) {
                        int base = ((bi * h + hi) * lq + i) * lk;
                        double max = Double.NEGATIVE_INFINITY;
                        for (int j = 0; j < lk; j++) {
                            max = Math.max(max, s[base + j]);
                        }
                        double sum = 0;
                        for (int j = 0; j < lk; j++) {
                            sum += Math.exp(s[base + j] - max);
                        }
                        for (int j = 0; j < lk; j++) {
                            p[base + j] = Math.exp(s[base + j] - max) / sum;
                        }
                    }
                } else { // over the query axis
                    for (int j = 0; j < lk; j++) {
                        double max = Double.NEGATIVE_INFINITY;
                        for (int i = 0; i < lq; i++) {
                            max = Math.max(max, s[((bi * h + hi) * lq + i) * lk + j]);
                        }
                        double sum = 0;
                        for (int i = 0; i < lq; i++) {
                            sum += Math.exp(s[((bi * h + hi) * lq + i) * lk + j] - max);
                        }
                        for (int i = 0; i < lq; i++) {
                            int at = ((bi * h + hi) * lq + i) * lk + j;
                            p[at] = Math.exp(s[at] - max) / sum;
                        }
                    }
                }
            }
        }
        double[] y = new double[b * h * lq * dv];
        for (int bh = 0; bh < b * h; bh++) {
            for (int i = 0; i < lq; i++) {
                for (int f = 0; f < dv; f++) {
                    double acc = 0;
                    for (int j = 0; j < lk; j++) {
                        acc += p[(bh * lq + i) * lk + j] * v[(bh * lk + j) * dv + f];
                    }
                    y[(bh * lq + i) * dv + f] = acc;
                }
            }
        }
        return y;
    }

    private static Map<String, float[]> attentionFeeds(Random r) {
        float[] mask = new float[2 * 7];
        // sequence 0 has 7 real tokens, sequence 1 has 4: the BERT mask (1 - m) * float32 min
        for (int j = 4; j < 7; j++) {
            mask[7 + j] = -3.4028234663852886e38f;
        }
        return Map.of("q", gaussian(r, 2 * 3 * 5 * 8, 4), "k", gaussian(r, 2 * 3 * 7 * 8, 4),
                "v", gaussian(r, 2 * 3 * 7 * 6, 4), "mask", mask);
    }

    private static final Map<String, long[]> ATTENTION_DIMS = Map.of("q", new long[] {2, 3, 5, 8},
            "k", new long[] {2, 3, 7, 8}, "v", new long[] {2, 3, 7, 6}, "mask", new long[] {2, 1, 1, 7});

    @Test
    void attentionChainBecomesOneAttention() {
        Map<String, float[]> feeds = attentionFeeds(new Random(15));
        double[] want = attentionReference(feeds.get("q"), feeds.get("k"), feeds.get("v"), feeds.get("mask"), 3);
        for (long axis : new long[] {-1, 3}) {
            try (OnnxModel m = OnnxModel.of(attentionModel(axis, false), null, CPU)) {
                assertEquals(List.of("Transpose", FUSED + "Attention"), m.runningOps(), "axis " + axis);
                assertClose(want, run(m, "y", feeds, ATTENTION_DIMS), 2e-6, "attention, softmax axis " + axis);
            }
        }
    }

    @Test
    void nearAttentionChainsStayAsWritten() {
        Map<String, float[]> feeds = attentionFeeds(new Random(16));
        // Softmax over the query axis: not attention
        double[] want = attentionReference(feeds.get("q"), feeds.get("k"), feeds.get("v"), feeds.get("mask"), 2);
        try (OnnxModel m = OnnxModel.of(attentionModel(2, false), null, CPU)) {
            assertEquals(0, fusedCount(m, "Attention"), m.runningOps().toString());
            assertClose(want, run(m, "y", feeds, ATTENTION_DIMS), 2e-6, "softmax over the queries");
        }
        // the raw scores are a graph output: the chain must stay
        try (OnnxModel m = OnnxModel.of(attentionModel(-1, true), null, CPU)) {
            assertEquals(0, fusedCount(m, "Attention"), m.runningOps().toString());
            double[] y = attentionReference(feeds.get("q"), feeds.get("k"), feeds.get("v"), feeds.get("mask"), 3);
            assertClose(y, run(m, "y", feeds, ATTENTION_DIMS), 2e-6, "attention with the scores read");
        }
    }

    // ------------------------------------------------------------------ convolution weights

    /**
     * x [1, 16, H, W] (H and W symbolic) -> y = Conv(x, w [32, 16, 3, 3], bias [32]) with
     * {@code attrs}; the weight an initializer, or also a graph input ({@code wFed}).
     */
    private static ModelProto convModel(float[] w, float[] bias, boolean wFed, AttributeProto... attrs) {
        TensorShapeProto.Builder sh = TensorShapeProto.newBuilder()
                .addDim(TensorShapeProto.Dimension.newBuilder().setDimValue(1))
                .addDim(TensorShapeProto.Dimension.newBuilder().setDimValue(16))
                .addDim(TensorShapeProto.Dimension.newBuilder().setDimParam("H"))
                .addDim(TensorShapeProto.Dimension.newBuilder().setDimParam("W"));
        ValueInfoProto x = ValueInfoProto.newBuilder().setName("x").setType(TypeProto.newBuilder().setTensorType(
                TypeProto.Tensor.newBuilder().setElemType(OnnxTensors.FLOAT).setShape(sh))).build();
        GraphProto.Builder g = GraphProto.newBuilder().setName("conv").addInput(x)
                .addOutput(ValueInfoProto.newBuilder().setName("y").setType(TypeProto.newBuilder().setTensorType(
                        TypeProto.Tensor.newBuilder().setElemType(OnnxTensors.FLOAT))))
                .addInitializer(floats("w", w, 32, 16, 3, 3)).addInitializer(floats("bias", bias, 32));
        if (wFed) {
            g.addInput(value("w", OnnxTensors.FLOAT, 32, 16, 3, 3));
        }
        g.addNode(node("Conv", List.of("x", "w", "bias"), "y", attrs));
        return model(g, 13);
    }

    /** y [1, 32, oh, ow] of a 3x3 convolution with stride s and symmetric padding p, in float64. */
    private static double[] convReference(float[] x, int h, int wd, float[] w, float[] bias, int s, int p) {
        int oh = (h + 2 * p - 3) / s + 1;
        int ow = (wd + 2 * p - 3) / s + 1;
        double[] y = new double[32 * oh * ow];
        for (int k = 0; k < 32; k++) {
            for (int i = 0; i < oh; i++) {
                for (int j = 0; j < ow; j++) {
                    double acc = bias[k];
                    for (int c = 0; c < 16; c++) {
                        for (int u = 0; u < 3; u++) {
                            for (int v = 0; v < 3; v++) {
                                int ih = i * s - p + u;
                                int iw = j * s - p + v;
                                if (ih >= 0 && ih < h && iw >= 0 && iw < wd) {
                                    acc += (double) x[(c * h + ih) * wd + iw] * w[((k * 16 + c) * 3 + u) * 3 + v];
                                }
                            }
                        }
                    }
                    y[(k * oh + i) * ow + j] = acc;
                }
            }
        }
        return y;
    }

    /**
     * A Conv with a constant float32 weight runs on a weight packed once per input geometry (here
     * Winograd: 3x3, stride 1, 16 -> 32 channels, NCHW), within float32 rounding of the float64
     * reference (1e-4 relative + 1e-4 absolute), for two image sizes (two packed geometries) and
     * again (reused); a stride-2 Conv, whose kernel has no packed layout in NCHW, runs as Conv; a
     * weight the caller may feed is not packed.
     */
    @Test
    void constantConvolutionWeightsArePackedOncePerGeometry() {
        Random r = new Random(18);
        float[] w = gaussian(r, 32 * 16 * 9, 3);
        float[] bias = gaussian(r, 32, 3);
        AttributeProto pad1 = ints("pads", 1, 1, 1, 1);
        try (OnnxModel m = OnnxModel.of(convModel(w, bias, false, pad1), null, CPU)) {
            assertEquals(List.of(FUSED + "PackedConv"), m.runningOps());
            for (int[] hw : new int[][] {{9, 7}, {6, 11}, {9, 7}}) {
                float[] x = gaussian(r, 16 * hw[0] * hw[1], 3);
                assertClose(convReference(x, hw[0], hw[1], w, bias, 1, 1),
                        run(m, "y", Map.of("x", x), Map.of("x", new long[] {1, 16, hw[0], hw[1]})), 1e-4,
                        "3x3 conv on " + hw[0] + "x" + hw[1]);
            }
            assertEquals(2, packedGeometries(m), "two image sizes, two packed weights");
        }
        try (OnnxModel m = OnnxModel.of(convModel(w, bias, false, pad1, ints("strides", 2, 2)), null, CPU)) {
            float[] x = gaussian(r, 16 * 9 * 8, 3);
            assertClose(convReference(x, 9, 8, w, bias, 2, 1),
                    run(m, "y", Map.of("x", x), Map.of("x", new long[] {1, 16, 9, 8})), 1e-4, "stride 2");
            assertEquals(0, packedGeometries(m), "im2col has no packed layout");
        }
        try (OnnxModel m = OnnxModel.of(convModel(w, bias, true, pad1), null, CPU)) {
            assertEquals(List.of("Conv"), m.runningOps(), "a weight the caller may feed");
        }
    }

    /** How many packed convolution weights the model's fused nodes hold. */
    private static int packedGeometries(OnnxModel m) {
        return m.resources().stream().filter(o -> o instanceof OnnxFusion.PackedConvWeights)
                .mapToInt(o -> ((OnnxFusion.PackedConvWeights) o).packedGeometries()).sum();
    }

    // ------------------------------------------------------------------ int8 weights

    /** a uint8 [6, 40] (zero point az fed) x b int8 [40, 9] (zero point 3) -> int32; b an initializer, or also a graph input. */
    private static ModelProto matMulIntegerModel(byte[] b, boolean bOverridable) {
        GraphProto.Builder g = GraphProto.newBuilder().setName("mmi")
                .addInput(value("a", OnnxTensors.UINT8, 6, 40)).addInput(value("az", OnnxTensors.UINT8))
                .addOutput(value("y", OnnxTensors.INT32, 6, 9))
                .addInitializer(int8s("b", b, 40, 9))
                .addInitializer(int8s("bz", new byte[] {3}));
        if (bOverridable) {
            g.addInput(value("b", OnnxTensors.INT8, 40, 9));
        }
        g.addNode(node("MatMulInteger", List.of("a", "b", "az", "bz"), "y"));
        return model(g, 13);
    }

    /** The exact int32 product of {@link #matMulIntegerModel}: (a [6, 40] - az)(b [40, 9] - 3). */
    private static long[] int8Product(int[] a, int az, byte[] b) {
        long[] c = new long[6 * 9];
        for (int i = 0; i < 6; i++) {
            for (int j = 0; j < 9; j++) {
                long acc = 0;
                for (int k = 0; k < 40; k++) {
                    acc += (long) (a[i * 40 + k] - az) * (b[k * 9 + j] - 3);
                }
                c[i * 9 + j] = acc;
            }
        }
        return c;
    }

    @Test
    void constantInt8WeightsArePackedOnceAndComputeExactly() {
        Random r = new Random(17);
        byte[] b = randomInt8(r, 40 * 9);
        int[] a = randomUint8(r, 6 * 40);
        int az = 131;
        long[] want = int8Product(a, az, b);
        for (boolean overridable : new boolean[] {false, true}) {
            try (OnnxModel m = OnnxModel.of(matMulIntegerModel(b, overridable), null, CPU);
                 Tensor at = Tensor.of(a, CPU, 6, 40);
                 Tensor a8 = at.to(DType.UINT8);
                 Tensor azt = Tensor.scalar(az, DType.UINT8, CPU)) {
                // a weight the caller may feed instead is no constant: it stays with the table's handler
                assertEquals(overridable ? 0 : 1, fusedCount(m, "MatMulInteger"), m.runningOps().toString());
                for (int rep = 0; rep < 2; rep++) { // the packed weights serve every run
                    Map<String, Tensor> out = m.run(Map.of("a", a8, "az", azt));
                    try (Tensor y = out.get("y")) {
                        assertEquals(DType.INT32, y.dtype());
                        long[] got = y.toLongArray();
                        for (int i = 0; i < want.length; i++) {
                            assertEquals(want[i], got[i], "element " + i + (overridable ? " (b overridable)" : ""));
                        }
                    }
                }
            }
        }
    }

    /**
     * The -q graphs' dequantization after MatMulInteger: y = Cast(acc, float) * s + bias (s fed,
     * of sizes {@code sDims}: one element, or one per column; bias [9] an initializer).
     * {@code castOut}: the Cast output is a graph output too.
     */
    private static ModelProto dequantizedModel(byte[] b, float[] bias, boolean castOut, long... sDims) {
        GraphProto.Builder g = matMulIntegerModel(b, false).getGraph().toBuilder().clearOutput()
                .addInput(value("s", OnnxTensors.FLOAT, sDims)).addInitializer(floats("bias", bias, 9))
                .addOutput(value("z", OnnxTensors.FLOAT, 6, 9));
        g.addNode(node("Cast", List.of("y"), "yf", intAttr("to", OnnxTensors.FLOAT)));
        g.addNode(node("Mul", List.of("s", "yf"), "ys"));
        g.addNode(node("Add", List.of("ys", "bias"), "z"));
        if (castOut) {
            g.addOutput(value("yf", OnnxTensors.FLOAT, 6, 9));
        }
        return model(g, 13);
    }

    @Test
    void theDequantizationJoinsThePackedGemmUnlessItIsReadElsewhere() {
        Random r = new Random(19);
        byte[] b = randomInt8(r, 40 * 9);
        int[] a = randomUint8(r, 6 * 40);
        float[] bias = gaussian(r, 9, 3);
        float[] columnScale = new float[9];
        for (int j = 0; j < 9; j++) {
            columnScale[j] = 0.0123f * (1 + r.nextFloat());
        }
        int az = 117;
        // the scale per tensor (one element, as a scalar and as [1]) and per column ([9], [1, 9])
        for (long[] sDims : new long[][] {{}, {1}, {9}, {1, 9}}) {
            boolean perColumn = sDims.length > 0 && sDims[sDims.length - 1] == 9;
            float[] s = perColumn ? columnScale : new float[] {columnScale[0]};
            long[] acc = int8Product(a, az, b);
            double[] want = new double[6 * 9];
            for (int i = 0; i < want.length; i++) {
                want[i] = acc[i] * (double) s[perColumn ? i % 9 : 0] + bias[i % 9];
            }
            for (boolean castOut : new boolean[] {false, true}) {
                String what = "dequantized product, scale " + Arrays.toString(sDims) + (castOut ? " (Cast read)" : "");
                try (OnnxModel m = OnnxModel.of(dequantizedModel(b, bias, castOut, sDims), null, CPU);
                     Tensor at = Tensor.of(a, CPU, 6, 40);
                     Tensor a8 = at.to(DType.UINT8);
                     Tensor azt = Tensor.scalar(az, DType.UINT8, CPU);
                     Tensor st = Tensor.of(s, CPU, sDims)) {
                    assertEquals(castOut ? List.of(FUSED + "MatMulInteger", "Cast", "Mul", "Add")
                            : List.of(FUSED + "MatMulIntegerToFloat"), m.runningOps(), what);
                    Map<String, Tensor> out = m.run(Map.of("a", a8, "az", azt, "s", st));
                    try {
                        float[] got = out.get("z").toFloatArray();
                        double[] g = new double[got.length];
                        for (int i = 0; i < got.length; i++) {
                            g[i] = got[i];
                        }
                        // |acc| < 2^21 is exact in float32; two roundings of values up to ~1e4 * 0.025
                        assertClose(want, g, 1e-6, what);
                    } finally {
                        out.values().forEach(Tensor::close);
                    }
                }
            }
        }
    }

    /**
     * The FFN of the -q graphs: the dequantized product z, then the erf GELU (Div sqrt 2, Erf,
     * Add 1, Mul, Mul 0.5) into g. Read only by the GELU, z never exists: the GELU runs in the
     * int8 GEMM's epilogue. When z is a graph output too, the GELU stays a pass of its own.
     */
    @Test
    void aGeluAfterTheDequantizedProductJoinsTheGemmEpilogue() {
        Random r = new Random(23);
        byte[] b = randomInt8(r, 40 * 9);
        int[] a = randomUint8(r, 6 * 40);
        float[] bias = gaussian(r, 9, 1);
        float s = 1.5e-4f; // z mostly in [-4, 4]: GELU's curved part
        int az = 117;
        long[] acc = int8Product(a, az, b);
        double[] want = new double[6 * 9];
        for (int i = 0; i < want.length; i++) {
            double z = (float) Math.fma((float) acc[i], s, bias[i % 9]);
            want[i] = 0.5 * z * (1 + erf(z / Math.sqrt(2)));
        }
        for (boolean zOut : new boolean[] {false, true}) {
            ModelProto base = dequantizedModel(b, bias, false);
            GraphProto.Builder g = base.getGraph().toBuilder().clearOutput().addOutput(value("g", OnnxTensors.FLOAT, 6, 9))
                    .addInitializer(scalar("one", 1)).addInitializer(scalar("half", 0.5))
                    .addInitializer(scalar("c", Math.sqrt(2)));
            g.addNode(node("Div", List.of("z", "c"), "gs"));
            g.addNode(node("Erf", List.of("gs"), "ge"));
            g.addNode(node("Add", List.of("ge", "one"), "ga"));
            g.addNode(node("Mul", List.of("z", "ga"), "gm"));
            g.addNode(node("Mul", List.of("gm", "half"), "g"));
            if (zOut) {
                g.addOutput(value("z", OnnxTensors.FLOAT, 6, 9));
            }
            String what = "GELU after the dequantized product" + (zOut ? " (z read too)" : "");
            try (OnnxModel m = OnnxModel.of(model(g, 13), null, CPU);
                 Tensor at = Tensor.of(a, CPU, 6, 40);
                 Tensor a8 = at.to(DType.UINT8);
                 Tensor azt = Tensor.scalar(az, DType.UINT8, CPU);
                 Tensor st = Tensor.of(new float[] {s}, CPU)) {
                assertEquals(zOut ? List.of(FUSED + "MatMulIntegerToFloat", FUSED + "Gelu") : List.of(FUSED + "MatMulIntegerToFloat"),
                        m.runningOps(), what);
                Map<String, Tensor> out = m.run(Map.of("a", a8, "az", azt, "s", st));
                try {
                    float[] got = out.get("g").toFloatArray();
                    double[] gd = new double[got.length];
                    for (int i = 0; i < got.length; i++) {
                        gd[i] = got[i];
                    }
                    // the float32 GELU: a few ulp of the float64 one on the same float32 z
                    assertClose(want, gd, 2e-6, what);
                } finally {
                    out.values().forEach(Tensor::close);
                }
            }
        }
    }

    @Test
    void sessionsWithoutOptimizationRunTheGraphAsWritten() {
        try (OnnxModel m = OnnxModel.of(geluModel(0, 0.5, false), null, CPU, false)) {
            assertFalse(m.runningOps().stream().anyMatch(o -> o.startsWith(FUSED)), m.runningOps().toString());
        }
        try (OnnxModel m = OnnxModel.of(geluModel(0, 0.5, false), null, CPU, true)) {
            assertTrue(m.runningOps().contains(FUSED + "Gelu"), m.runningOps().toString());
        }
    }
}
