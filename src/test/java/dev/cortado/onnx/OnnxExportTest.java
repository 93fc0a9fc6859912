package dev.cortado.onnx;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.graph.CompileOptions;
import dev.cortado.graph.Graph;
import dev.cortado.graph.Graphs;
import dev.cortado.onnx.proto.Onnx.ModelProto;
import dev.cortado.onnx.proto.Onnx.NodeProto;
import dev.cortado.ops.Elementwise;
import dev.cortado.ops.LinearAlgebra;
import dev.cortado.ops.Normalization;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.HashSet;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.function.Function;
import org.junit.jupiter.api.Test;

/**
 * ONNX export of captured graphs, checked by importing the exported model and comparing its
 * outputs with the engine's eager outputs on fresh random inputs (float32: 1e-5 relative plus
 * 1e-6 absolute; the same kernels run both sides, so the differences are reassociation only).
 */
@SuppressWarnings("try") // Scope blocks free what the body creates without naming the scope
class OnnxExportTest {

    private static float[] random(Random r, int n) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) r.nextGaussian();
        }
        return v;
    }

    /** Captures {@code fn} on {@code x}, exports, re-imports, runs, and compares with {@code fn(x)}. */
    private static ModelProto roundTrip(Function<Tensor, Tensor> fn, Tensor x, Map<String, Tensor> parameters) {
        float[] want;
        long[] dims;
        try (Scope s = Scope.open()) {
            Tensor y = fn.apply(x);
            want = y.toFloatArray();
            dims = y.dims();
        }
        ModelProto model;
        try (Graph g = Graphs.capture(fn, x, CompileOptions.builder().parameters(parameters).build())) {
            model = OnnxExport.export(g, "roundtrip");
        }
        try (Scope s = Scope.open(); OnnxModel m = OnnxModel.of(ModelProto.parseFrom(model.toByteArray()).toBuilder().build())) {
            Tensor y = m.run(Map.of(m.inputNames().get(0), x)).get(m.outputNames().get(0));
            assertArrayEquals(dims, y.dims());
            float[] got = y.toFloatArray();
            for (int i = 0; i < want.length; i++) {
                assertTrue(Math.abs(got[i] - want[i]) <= 1e-6 + 1e-5 * Math.abs(want[i]),
                        "element " + i + ": " + got[i] + " vs " + want[i]);
            }
        } catch (com.google.protobuf.InvalidProtocolBufferException e) {
            throw new AssertionError(e);
        }
        return model;
    }

    private static Set<String> opTypes(ModelProto m) {
        Set<String> ops = new HashSet<>();
        for (NodeProto n : m.getGraph().getNodeList()) {
            ops.add(n.getOpType());
        }
        return ops;
    }

    @Test
    void mlpWithElementwiseViewsAndSoftmaxRoundTrips() {
        Random r = new Random(3);
        try (Tensor w = Tensor.of(random(r, 6 * 5), Device.CPU, 6, 5);
             Tensor b = Tensor.of(random(r, 5), Device.CPU, 5);
             Tensor x = Tensor.of(random(r, 4 * 6), Device.CPU, 4, 6)) {
            Function<Tensor, Tensor> fn = in -> {
                Tensor h = Elementwise.relu(Elementwise.add(LinearAlgebra.matmul(in, w), b));      // [4, 5]
                Tensor g = Elementwise.sub(Elementwise.mul(Elementwise.sigmoid(h), Elementwise.tanh(h)),
                        Elementwise.exp(Elementwise.neg(h)));
                g = Elementwise.affine(g, 0.5, 1.25);
                g = Elementwise.div(g, Elementwise.add(Elementwise.abs(g), 1));
                Tensor t = g.transpose(0, 1).contiguous();                                         // [5, 4]
                Tensor u = Normalization.softmax(t.reshape(2, 10), 1);
                Tensor v = u.narrow(1, 2, 6);                                                       // a slice
                Tensor c = Elementwise.clamp(Elementwise.add(v, Elementwise.gelu(v)), 0.01, 0.6);
                return Elementwise.maximum(Elementwise.sqrt(c), Elementwise.pow(c, 2.0));
            };
            ModelProto m = roundTrip(fn, x, Map.of("w", w, "b", b));
            Set<String> ops = opTypes(m);
            for (String op : new String[] {"MatMul", "Add", "Relu", "Sigmoid", "Tanh", "Exp", "Neg", "Softmax", "Transpose"}) {
                assertTrue(ops.contains(op), op + " not in " + ops);
            }
            assertEquals(OnnxExport.OPSET, m.getOpsetImport(0).getVersion());
            assertTrue(m.getGraph().getInitializerCount() >= 2, "the weights are initializers");
        }
    }

    @Test
    void stridedSlicesAndCastsRoundTrip() {
        Random r = new Random(5);
        try (Tensor x = Tensor.of(random(r, 6 * 8), Device.CPU, 6, 8)) {
            roundTrip(in -> {
                Tensor s = in.slice(1, 1, 8, 3).narrow(0, 1, 4);   // steps and an offset
                Tensor d = s.contiguous().to(dev.cortado.tensor.DType.FLOAT64);
                return Normalization.logSoftmax(d, 1).to(dev.cortado.tensor.DType.FLOAT32);
            }, x, Map.of());
        }
    }

    @Test
    void anOpWithoutOnnxFormIsNamed() {
        try (Tensor x = Tensor.of(new float[] {1, 2, 3, 4, 5, 6}, 2, 3);
             Graph g = Graphs.capture(in -> Normalization.layerNorm(in, null, null, 1, 1e-5), x, CompileOptions.defaults())) {
            UnsupportedOperationException e = assertThrows(UnsupportedOperationException.class,
                    () -> OnnxExport.export(g, "ln"));
            assertTrue(e.getMessage().contains("layer_norm") || e.getMessage().contains("norm"), e.getMessage());
        }
    }
}
