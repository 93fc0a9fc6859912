package dev.cortado.io;

import com.code_intelligence.jazzer.junit.FuzzTest;
import dev.cortado.tensor.Tensor;
import dev.cortado.testing.Fuzzing;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Fuzzes {@link IdxReader#read(byte[], String)}: arbitrary bytes, gzipped or not, as an IDX file.
 * Declared: {@link IdxFormatException} with a message naming the input (bad magic, unknown type,
 * absurd sizes, truncated data or gzip stream, trailing bytes). Corpus:
 * {@code IdxReaderFuzzTestInputs/read} (the first records of the real MNIST files).
 */
class IdxReaderFuzzTest {
    static final List<Class<? extends Throwable>> DECLARED = List.of(IdxFormatException.class);

    @FuzzTest(maxDuration = "20s")
    void read(byte[] data) {
        Fuzzing.check("idx", DECLARED, data, () -> {
            try (Tensor t = IdxReader.read(data, "fuzz.idx")) {
                assertTrue(t.numel() >= 0);
            }
        });
    }
}
