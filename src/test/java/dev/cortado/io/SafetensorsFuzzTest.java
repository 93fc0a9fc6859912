package dev.cortado.io;

import com.code_intelligence.jazzer.junit.FuzzTest;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;
import dev.cortado.testing.Fuzzing;

import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * Fuzzes {@link Safetensors#read}: arbitrary bytes as a {@code .safetensors} file. Declared:
 * {@link CheckpointFormatException} with a message (the header grammar, dtypes, shapes against
 * byte counts, offsets tiling the data). An accepted file's tensors must have exactly the bytes
 * their header gives. Corpus: {@code SafetensorsFuzzTestInputs/read} (docs/reliability.md#fuzzing).
 */
class SafetensorsFuzzTest {
    static final List<Class<? extends Throwable>> DECLARED = List.of(CheckpointFormatException.class);

    @FuzzTest(maxDuration = "20s")
    void read(byte[] data) {
        Fuzzing.check("safetensors", DECLARED, data, () -> {
            Path file = Fuzzing.scratchFile("fuzz.safetensors", data);
            Safetensors.Header header = Safetensors.readHeader(file);
            try (Safetensors.Contents c = Safetensors.read(file, Device.CPU)) {
                assertEquals(header.tensors().size(), c.tensors().size());
                for (Safetensors.TensorInfo info : header.tensors()) {
                    Tensor t = c.get(info.name());
                    assertEquals(info.shape(), t.shape(), info.name());
                    assertEquals(info.dtype(), t.dtype(), info.name());
                }
            }
        });
    }
}
