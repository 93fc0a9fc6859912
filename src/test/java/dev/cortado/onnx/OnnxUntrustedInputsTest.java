package dev.cortado.onnx;

import dev.cortado.onnx.proto.Onnx.AttributeProto;
import dev.cortado.onnx.proto.Onnx.GraphProto;
import dev.cortado.onnx.proto.Onnx.ModelProto;
import dev.cortado.onnx.proto.Onnx.NodeProto;
import dev.cortado.onnx.proto.Onnx.OperatorSetIdProto;
import dev.cortado.onnx.proto.Onnx.StringStringEntryProto;
import dev.cortado.onnx.proto.Onnx.TensorProto;
import dev.cortado.onnx.proto.Onnx.TypeProto;
import dev.cortado.onnx.proto.Onnx.ValueInfoProto;
import dev.cortado.tensor.Device;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A model file is data (docs/reliability.md#untrusted-inputs): protobuf nesting is limited to
 * {@link OnnxModel#MAX_NESTING}, tensor dims whose element count is negative or does not fit in a
 * long are refused naming the tensor before any buffer is sized from them, and an external-data
 * range is checked against its file without overflowing. (External data paths confined to the
 * model's folder: {@code OnnxImportTest.externalDataOutsideTheFolderIsRefused}.)
 */
class OnnxUntrustedInputsTest {

    private static ModelProto model(GraphProto graph) {
        return ModelProto.newBuilder().setIrVersion(8)
                .addOpsetImport(OperatorSetIdProto.newBuilder().setDomain("").setVersion(17))
                .setGraph(graph).build();
    }

    private static ValueInfoProto value(String name) {
        return ValueInfoProto.newBuilder().setName(name)
                .setType(TypeProto.newBuilder().setTensorType(TypeProto.Tensor.newBuilder().setElemType(OnnxTensors.FLOAT)))
                .build();
    }

    /** Identity(x), wrapped in {@code levels} nested If subgraphs (three messages per level). */
    private static GraphProto nested(int levels) {
        GraphProto g = GraphProto.newBuilder().setName("g" + levels)
                .addNode(NodeProto.newBuilder().setOpType("Identity").addInput("x").addOutput("y" + levels))
                .addOutput(value("y" + levels)).build();
        GraphProto small = g;
        for (int k = levels - 1; k >= 0; k--) {
            NodeProto ifNode = NodeProto.newBuilder().setOpType("If").addInput("c").addOutput("y" + k)
                    .addAttribute(AttributeProto.newBuilder().setName("then_branch").setType(AttributeProto.AttributeType.GRAPH).setG(g))
                    .addAttribute(AttributeProto.newBuilder().setName("else_branch").setType(AttributeProto.AttributeType.GRAPH).setG(small))
                    .build();
            g = GraphProto.newBuilder().setName("g" + k).addNode(ifNode).addOutput(value("y" + k)).build();
        }
        return g.toBuilder().addInput(value("x")).addInput(value("c")).build();
    }

    @Test
    void deeplyNestedModelsAreRefusedWhileParsing(@TempDir Path dir) throws IOException {
        // 25 levels: 2 + 3 * 25 = 77 nested messages, within protobuf-java's default of 100
        Path deep = dir.resolve("deep.onnx");
        Files.write(deep, model(nested(25)).toByteArray());
        OnnxImportException e = assertThrows(OnnxImportException.class, () -> OnnxModel.read(deep));
        assertTrue(e.getMessage().contains("nesting"), e.getMessage());
        // 15 levels (47 messages) parse
        Path ok = dir.resolve("ok.onnx");
        Files.write(ok, model(nested(15)).toByteArray());
        assertEquals(1, OnnxModel.read(ok).getGraph().getNodeCount());
    }

    @Test
    void dimsWhoseElementCountIsNegativeOrOverflowsAreRefused() {
        long[][] bad = {{1L << 62, 4}, {-1}, {-2, -3}, {1L << 31, 1L << 31, 2}};
        for (long[] dims : bad) {
            TensorProto.Builder w = TensorProto.newBuilder().setName("W").setDataType(OnnxTensors.FLOAT);
            for (long d : dims) {
                w.addDims(d);
            }
            GraphProto g = GraphProto.newBuilder().addInitializer(w)
                    .addNode(NodeProto.newBuilder().setOpType("Identity").addInput("W").addOutput("y"))
                    .addOutput(value("y")).build();
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> OnnxModel.of(model(g)).close(), java.util.Arrays.toString(dims));
            assertTrue(e.getMessage().contains("tensor 'W'"), e.getMessage());
        }
    }

    @Test
    void externalDataRangesAreCheckedWithoutOverflow(@TempDir Path dir) throws IOException {
        Files.write(dir.resolve("w.bin"), new byte[64]);
        for (String[] range : new String[][] {{"9223372036854775800", "16"}, {"8", "9223372036854775807"},
                {"60", "8"}, {"-1", "4"}}) {
            TensorProto w = TensorProto.newBuilder().setName("W").setDataType(OnnxTensors.FLOAT).addDims(4)
                    .setDataLocation(TensorProto.DataLocation.EXTERNAL)
                    .addExternalData(StringStringEntryProto.newBuilder().setKey("location").setValue("w.bin"))
                    .addExternalData(StringStringEntryProto.newBuilder().setKey("offset").setValue(range[0]))
                    .addExternalData(StringStringEntryProto.newBuilder().setKey("length").setValue(range[1]))
                    .build();
            OnnxImportException e = assertThrows(OnnxImportException.class,
                    () -> OnnxTensors.withExternalData(w, dir), String.join(", ", range));
            assertTrue(e.getMessage().contains("does not fit in"), e.getMessage());
        }
        // model loaded from its folder: the file is found there
        Files.write(dir.resolve("model.onnx"), model(GraphProto.newBuilder().build()).toByteArray());
        OnnxModel.load(dir.resolve("model.onnx"), Device.CPU).close();
    }
}
