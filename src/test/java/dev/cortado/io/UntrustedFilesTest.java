package dev.cortado.io;

import org.junit.jupiter.api.Test;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.zip.GZIPOutputStream;

import static org.junit.jupiter.api.Assertions.assertEquals;
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

    /** One gzip member of {@code n} bytes of 'a' (it compresses about 1000 to 1). */
    private static byte[] gzipOfA(int n) throws IOException {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        try (GZIPOutputStream gz = new GZIPOutputStream(bytes)) {
            byte[] a = new byte[1 << 16];
            Arrays.fill(a, (byte) 'a');
            for (int left = n; left > 0; left -= a.length) {
                gz.write(a, 0, Math.min(left, a.length));
            }
        }
        return bytes.toByteArray();
    }

    @Test
    void aGzipBombIsRefusedAtTheCapNamingTheFile() throws IOException {
        // 257 concatenated members of 1 MiB each (GZIPInputStream reads them as one stream):
        // about 260 KiB of file that would expand to 257 MiB, over the 256 MiB default cap
        byte[] member = gzipOfA(1 << 20);
        ByteArrayOutputStream bomb = new ByteArrayOutputStream();
        for (int i = 0; i < 257; i++) {
            bomb.write(member);
        }
        byte[] file = bomb.toByteArray();
        assertTrue(file.length < 2 << 20, "the file is small: " + file.length);
        IOException e = assertThrows(IOException.class,
                () -> TextCorpus.read(new ByteArrayInputStream(file), "bomb.txt.gz"));
        assertTrue(e.getMessage().contains("bomb.txt.gz") && e.getMessage().contains("more than "
                + TextCorpus.DEFAULT_MAX_BYTES + " bytes"), e.getMessage());

        // a cap of one's own: exactly at the cap is read, one byte over is refused
        byte[] small = gzipOfA(5000);
        assertEquals(5000, TextCorpus.read(new ByteArrayInputStream(small), "a.txt.gz", 5000).length());
        IOException over = assertThrows(IOException.class,
                () -> TextCorpus.read(new ByteArrayInputStream(small), "a.txt.gz", 4999));
        assertTrue(over.getMessage().contains("a.txt.gz") && over.getMessage().contains("more than 4999"),
                over.getMessage());
        assertThrows(IllegalArgumentException.class,
                () -> TextCorpus.read(new ByteArrayInputStream(small), "a.txt.gz", -1));
    }
}
