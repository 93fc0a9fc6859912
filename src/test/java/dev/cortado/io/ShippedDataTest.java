package dev.cortado.io;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.tensor.DType;
import dev.cortado.tensor.Tensor;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.util.HexFormat;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.zip.GZIPInputStream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** The data shipped in dev/cortado/data: checksums from SOURCE.txt, MNIST and the Austen corpus. */
class ShippedDataTest {
    private static String source;
    private static TextCorpus austen;

    @BeforeAll
    static void load() throws IOException {
        try (InputStream in = Resources.open(Resources.DATA + "SOURCE.txt")) {
            source = new String(in.readAllBytes(), StandardCharsets.UTF_8);
        }
        austen = TextCorpus.austen();
    }

    private static String sha256(String file, boolean gunzip) throws Exception {
        MessageDigest md = MessageDigest.getInstance("SHA-256");
        try (InputStream raw = Resources.open(Resources.DATA + file);
             InputStream in = gunzip ? new GZIPInputStream(raw) : raw) {
            byte[] buf = new byte[1 << 16];
            for (int r; (r = in.read(buf)) > 0; ) {
                md.update(buf, 0, r);
            }
        }
        return HexFormat.of().formatHex(md.digest());
    }

    /** The 64-hex-digit value after {@code label} in SOURCE.txt (whitespace in between). */
    private static String sourceLine(String label) {
        Matcher m = Pattern.compile(Pattern.quote(label) + "\\s+([0-9a-f]{64})").matcher(source);
        assertTrue(m.find(), "SOURCE.txt has no sha256 line for " + label);
        return m.group(1);
    }

    @Test
    void checksumsMatchSourceNotes() throws Exception {
        // the upstream notes: MNIST sha256 of the .gz files, Austen of the uncompressed text
        assertEquals(sourceLine("sha256 images"), sha256("mnist-10k-images-idx3-ubyte.gz", false));
        assertEquals(sourceLine("sha256 labels"), sha256("mnist-10k-labels-idx1-ubyte.gz", false));
        assertEquals(sourceLine("sha256  images"), sha256("t10k-images-idx3-ubyte.gz", false));
        Matcher t10kLabels = Pattern.compile("images [0-9a-f]{64}\\s+labels ([0-9a-f]{64})").matcher(source);
        assertTrue(t10kLabels.find());
        assertEquals(t10kLabels.group(1), sha256("t10k-labels-idx1-ubyte.gz", false));
        assertEquals(sourceLine("Uncompressed sha256"), sha256("austen-6-novels.txt.gz", true));
        // our added lines: the uncompressed IDX content
        for (String f : new String[] {"mnist-10k-images-idx3-ubyte", "mnist-10k-labels-idx1-ubyte",
                "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"}) {
            assertEquals(sourceLine("  " + f), sha256(f + ".gz", true), f);
        }
        assertEquals(sourceLine("austen-6-novels.txt.gz (gz)"), sha256("austen-6-novels.txt.gz", false));
    }

    private static void checkMnist(TensorDataset d, long[] histogram) {
        assertEquals(10000, d.size());
        assertEquals(DType.FLOAT32, d.inputs().dtype());
        assertArrayEquals(new long[] {10000, 1, 28, 28}, d.inputs().dims());
        assertEquals(DType.INT64, d.targets().dtype());
        assertArrayEquals(new long[] {10000}, d.targets().dims());
        assertArrayEquals(histogram, Mnist.labelHistogram(d));
        float min = Float.MAX_VALUE;
        float max = -Float.MAX_VALUE;
        for (float v : d.inputs().toFloatArray()) {
            min = Math.min(min, v);
            max = Math.max(max, v);
        }
        assertEquals(0f, min);
        assertEquals(1f, max);
    }

    @Test
    void mnistTrain10k() {
        try (TensorDataset d = Mnist.train10k()) {
            checkMnist(d, new long[] {1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978});
            long[] labels = d.targets().toLongArray();
            assertEquals(0, labels[0]);
            assertEquals(9, labels[9999]); // sorted by label
        }
    }

    @Test
    void mnistTest() {
        try (TensorDataset d = Mnist.test()) {
            checkMnist(d, new long[] {980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009});
            try (Example e = d.get(0)) {
                assertEquals(7, e.target().item()); // test image 0 is a 7
                assertArrayEquals(new long[] {1, 28, 28}, e.input().dims());
            }
        }
    }

    @Test
    void mnistNormalized() {
        try (TensorDataset d = Mnist.test(true)) {
            float[] x = d.inputs().toFloatArray();
            double sum = 0;
            float min = Float.MAX_VALUE;
            for (float v : x) {
                sum += v;
                min = Math.min(min, v);
            }
            assertEquals(-Mnist.MEAN / Mnist.STD, min, 1e-6);
            assertEquals(0.0, sum / x.length, 0.05); // test-set mean is close to the training mean
        }
    }

    @Test
    void austenCorpus() {
        assertEquals(4_025_035, austen.byteLength());
        assertEquals(81, austen.vocabSize());
        int[] vocab = austen.vocabulary();
        assertEquals('\n', vocab[0]);
        assertEquals('£', vocab[80]);
        for (int i = 1; i < vocab.length; i++) {
            assertTrue(vocab[i - 1] < vocab[i]);
        }
        long[] tokens = austen.tokens();
        assertEquals(austen.length(), tokens.length);
        assertEquals(4_025_035 - countPound(), tokens.length); // '£' is 2 bytes, 1 character
        String head = austen.decode(java.util.Arrays.copyOf(tokens, 200));
        assertArrayEquals(java.util.Arrays.copyOf(tokens, 200), austen.encode(head));
        assertTrue(head.startsWith("SENSE AND SENSIBILITY"), head);
    }

    private static int countPound() {
        long pound = austen.encode("£")[0];
        int n = 0;
        for (long t : austen.tokens()) {
            if (t == pound) {
                n++;
            }
        }
        return n;
    }

    @Test
    void encodeDecodeRoundTripAndErrors() {
        String s = "It is a truth universally acknowledged, £5!\n";
        assertEquals(s, austen.decode(austen.encode(s)));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> austen.encode("naïve"));
        assertTrue(e.getMessage().contains("U+00EF"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> austen.decode(new long[] {81}));
        try (Tensor t = Tensor.of(austen.encode("Emma"), 2, 2)) {
            assertEquals("Emma", austen.decode(t));
        }
    }

    @Test
    void splitAndWindows() {
        TextCorpus.Split split = austen.split(0.1);
        assertEquals(austen.length(), split.train().length + split.validation().length);
        assertEquals(austen.length() / 10, split.validation().length);
        long[] all = austen.tokens();
        assertEquals(all[split.train().length], split.validation()[0]);
        int t = 64;
        try (CharSequenceDataset ds = new CharSequenceDataset(split.validation(), t)) {
            assertEquals(split.validation().length - t, ds.size());
            for (int i : new int[] {0, 17, ds.size() - 1}) {
                try (Example e = ds.get(i)) {
                    assertArrayEquals(new long[] {t}, e.input().dims());
                    assertArrayEquals(new long[] {t}, e.target().dims());
                    long[] x = e.input().toLongArray();
                    long[] y = e.target().toLongArray();
                    assertArrayEquals(java.util.Arrays.copyOfRange(split.validation(), i, i + t), x);
                    assertArrayEquals(java.util.Arrays.copyOfRange(x, 1, t), java.util.Arrays.copyOf(y, t - 1));
                    assertEquals(split.validation()[i + t], y[t - 1]);
                }
            }
            assertThrows(IndexOutOfBoundsException.class, () -> ds.get(ds.size()));
        }
        try (CharSequenceDataset ds = new CharSequenceDataset(new long[] {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, 3, 3);
             Example last = ds.get(2)) {
            assertEquals(3, ds.size()); // starts 0, 3, 6; a window at 9 would need token 12
            assertArrayEquals(new long[] {6, 7, 8}, last.input().toLongArray());
            assertArrayEquals(new long[] {7, 8, 9}, last.target().toLongArray());
        }
    }
}
