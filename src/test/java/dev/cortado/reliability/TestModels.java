package dev.cortado.reliability;

import com.google.protobuf.ByteString;
import dev.cortado.onnx.OnnxTensors;
import dev.cortado.onnx.proto.Onnx.GraphProto;
import dev.cortado.onnx.proto.Onnx.ModelProto;
import dev.cortado.onnx.proto.Onnx.NodeProto;
import dev.cortado.onnx.proto.Onnx.OperatorSetIdProto;
import dev.cortado.onnx.proto.Onnx.TensorProto;
import dev.cortado.onnx.proto.Onnx.TensorShapeProto;
import dev.cortado.onnx.proto.Onnx.TypeProto;
import dev.cortado.onnx.proto.Onnx.ValueInfoProto;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.SplittableRandom;

/** Small models the concurrency and soak tests build in memory (no files needed). */
final class TestModels {
    private TestModels() {
    }

    static float[] gaussian(SplittableRandom r, int n, double scale) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            // Box-Muller: normal(0, scale), never exactly zero in practice
            double u = r.nextDouble(1e-12, 1.0);
            double w = r.nextDouble();
            v[i] = (float) (scale * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * w));
        }
        return v;
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

    private static ValueInfoProto value(String name, Object... dims) {
        TensorShapeProto.Builder s = TensorShapeProto.newBuilder();
        for (Object d : dims) {
            s.addDim(d instanceof String p ? TensorShapeProto.Dimension.newBuilder().setDimParam(p)
                    : TensorShapeProto.Dimension.newBuilder().setDimValue(((Number) d).longValue()));
        }
        return ValueInfoProto.newBuilder().setName(name).setType(TypeProto.newBuilder().setTensorType(
                TypeProto.Tensor.newBuilder().setElemType(OnnxTensors.FLOAT).setShape(s))).build();
    }

    /**
     * {@code y = softmax(relu(x W1 + b1) W2 + b2)} with x [batch, in] (batch open), random weights
     * from {@code seed}: a classifier head of the size an MNIST MLP has when in = 784.
     */
    static ModelProto mlp(long seed, int in, int hidden, int out) {
        SplittableRandom r = new SplittableRandom(seed);
        GraphProto g = GraphProto.newBuilder()
                .addNode(NodeProto.newBuilder().setOpType("MatMul").setName("mm1").addInput("x").addInput("W1").addOutput("h0"))
                .addNode(NodeProto.newBuilder().setOpType("Add").setName("add1").addInput("h0").addInput("b1").addOutput("h1"))
                .addNode(NodeProto.newBuilder().setOpType("Relu").setName("relu").addInput("h1").addOutput("h2"))
                .addNode(NodeProto.newBuilder().setOpType("MatMul").setName("mm2").addInput("h2").addInput("W2").addOutput("z0"))
                .addNode(NodeProto.newBuilder().setOpType("Add").setName("add2").addInput("z0").addInput("b2").addOutput("z"))
                .addNode(NodeProto.newBuilder().setOpType("Softmax").setName("softmax").addInput("z").addOutput("y"))
                .addInitializer(floats("W1", gaussian(r, in * hidden, 1 / Math.sqrt(in)), in, hidden))
                .addInitializer(floats("b1", gaussian(r, hidden, 0.1), hidden))
                .addInitializer(floats("W2", gaussian(r, hidden * out, 1 / Math.sqrt(hidden)), hidden, out))
                .addInitializer(floats("b2", gaussian(r, out, 0.1), out))
                .addInput(value("x", "batch", in))
                .addOutput(value("y", "batch", out))
                .build();
        return ModelProto.newBuilder().setIrVersion(8)
                .addOpsetImport(OperatorSetIdProto.newBuilder().setDomain("").setVersion(17)).setGraph(g).build();
    }
}
