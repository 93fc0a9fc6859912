package dev.cortado.onnx;

import com.code_intelligence.jazzer.junit.FuzzTest;
import dev.cortado.tensor.Device;
import dev.cortado.testing.Fuzzing;

import java.nio.file.Path;
import java.util.List;

/**
 * Fuzzes the ONNX importer: arbitrary bytes as {@code model.onnx}, parsed (with the protobuf
 * nesting limit), checked against the op table, its initializers and {@code Constant}s loaded and
 * its op chains fused ({@link OnnxModel#load(Path, Device)}). Declared, each with a message:
 * {@link OnnxImportException} (unreadable protobuf, no graph, unsupported op, external data
 * outside the model's folder), {@link IllegalArgumentException} (a tensor or node whose fields
 * contradict each other, naming it) and {@link UnsupportedOperationException} (an element type
 * Cortado has no dtype for). Corpus: {@code OnnxImportFuzzTestInputs/load} (small models of the
 * ONNX node tests and PyTorch exports).
 */
class OnnxImportFuzzTest {
    static final List<Class<? extends Throwable>> DECLARED = List.of(OnnxImportException.class,
            IllegalArgumentException.class, UnsupportedOperationException.class);

    @FuzzTest(maxDuration = "20s")
    void load(byte[] data) {
        Fuzzing.check("onnx-import", DECLARED, data, () -> {
            Path file = Fuzzing.scratchFile("model.onnx", data);
            try (OnnxModel m = OnnxModel.load(file, Device.CPU)) {
                m.inputNames();
                m.outputNames();
            }
        });
    }
}
