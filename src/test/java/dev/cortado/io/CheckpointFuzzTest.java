package dev.cortado.io;

import com.code_intelligence.jazzer.junit.FuzzTest;
import dev.cortado.tensor.Device;
import dev.cortado.testing.Fuzzing;

import java.nio.file.Path;
import java.util.List;

/**
 * Fuzzes {@link Checkpoint#load}: arbitrary bytes as a checkpoint file, then its info accessors.
 * Declared: {@link CheckpointFormatException} with a message (a corrupt file, an unsupported
 * format version, a tensor outside the model and optimizer groups) and, from
 * {@link Checkpoint.Loaded#step()}/{@code seed()}, {@link IllegalStateException} naming the
 * entry that is not an integer. Corpus: {@code CheckpointFuzzTestInputs/load}.
 */
class CheckpointFuzzTest {
    static final List<Class<? extends Throwable>> DECLARED = List.of(CheckpointFormatException.class,
            IllegalStateException.class);

    @FuzzTest(maxDuration = "20s")
    void load(byte[] data) {
        Fuzzing.check("checkpoint", DECLARED, data, () -> {
            Path file = Fuzzing.scratchFile("fuzz-checkpoint.safetensors", data);
            try (Checkpoint.Loaded ck = Checkpoint.load(file, Device.CPU)) {
                ck.model().size();
                ck.optimizer().size();
                ck.formatVersion();
                ck.step();
                ck.seed();
            }
        });
    }
}
