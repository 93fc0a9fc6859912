package dev.cortado.io;

import org.junit.jupiter.api.Test;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.zip.GZIPOutputStream;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Data files are data (docs/reliability.md#untrusted-inputs), beyond what
 * {@code SafetensorsTest.malformedFilesGiveClearErrors} checks of safetensors (header length
 * capped at {@link Safetensors#MAX_HEADER_BYTES}, offsets tiling exactly the bytes of the file):
 * sizes are judged before any buffer is sized from them, and every error names its file.
 */
class UntrustedFilesTest {

    @Test
    void idxSizesAreJudgedOnTheTensorTheyMake() {
        // int16 data widens to int32: 0x30000000 elements are 1.5 GiB in the file but 3 GiB as a
        // tensor, more than a Java array holds; refused from the header (before: the reader went
        // on to read the data, and with the data present sized an int[] of 2 * 1.5 GiB: negative)
        byte[] header = {0, 0, 0x0B, 1, 0x30, 0, 0, 0};
        IdxFormatException e = assertThrows(IdxFormatException.class, () -> IdxReader.read(header, "big.idx"));
        assertTrue(e.getMessage().contains("big.idx") && e.getMessage().contains("absurd IDX sizes"), e.getMessage());
    }

    @Test
    void truncatedOrCorruptGzipTextNamesTheFile() throws IOException {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        try (GZIPOutputStream gz = new GZIPOutputStream(bytes)) {
            gz.write("It is a truth universally acknowledged".getBytes(StandardCharsets.UTF_8));
        }
        byte[] gz = bytes.toByteArray();
        byte[] cut = Arrays.copyOf(gz, gz.length - 10);
        IOException e = assertThrows(IOException.class,
                () -> TextCorpus.read(new ByteArrayInputStream(cut), "austen.txt.gz"));
        assertTrue(e.getMessage().contains("austen.txt.gz") && e.getMessage().contains("gzip"), e.getMessage());
        byte[] corrupt = gz.clone();
        corrupt[12] ^= (byte) 0xFF;
        IOException c = assertThrows(IOException.class,
                () -> TextCorpus.read(new ByteArrayInputStream(corrupt), "austen.txt.gz"));
        assertTrue(c.getMessage().contains("austen.txt.gz"), c.getMessage());
    }
}
