package dev.cortado.tensor;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@link AtomicFiles}, the one way Cortado writes files: the new content replaces the old whole,
 * and a failure in the middle keeps the old file byte for byte and leaves no temporary file.
 * (SIGKILL at random points of a checkpoint save: {@code CrashSafetyTest}.)
 */
class AtomicFilesTest {

    private static List<Path> listing(Path dir) throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            return s.sorted().toList();
        }
    }

    @Test
    void theNewContentReplacesTheOldWhole(@TempDir Path dir) throws IOException {
        Path f = dir.resolve("plan.bin");
        AtomicFiles.write(f, "first version, longer than the second".getBytes(StandardCharsets.UTF_8));
        AtomicFiles.write(f, "second".getBytes(StandardCharsets.UTF_8));
        assertEquals("second", Files.readString(f));
        assertEquals(List.of(f), listing(dir));
        // a writer that seeks: the header last, as PlanFile writes
        AtomicFiles.write(f, ch -> {
            ch.position(4);
            ch.write(ByteBuffer.wrap("body".getBytes(StandardCharsets.UTF_8)));
            ch.position(0);
            ch.write(ByteBuffer.wrap("HEAD".getBytes(StandardCharsets.UTF_8)));
        });
        assertEquals("HEADbody", Files.readString(f));
    }

    @Test
    void aFailureMidWriteKeepsTheOldFileAndLeavesNoTemporary(@TempDir Path dir) throws IOException {
        Path f = dir.resolve("ck.safetensors");
        byte[] old = new byte[10_000];
        new java.util.Random(7).nextBytes(old);
        AtomicFiles.write(f, old);
        IOException io = new IOException("No space left on device (simulated)");
        IOException thrown = assertThrows(IOException.class, () -> AtomicFiles.write(f, ch -> {
            ch.write(ByteBuffer.wrap(new byte[5000]));
            throw io;
        }));
        assertSame(io, thrown);
        IllegalStateException bug = assertThrows(IllegalStateException.class, () -> AtomicFiles.write(f, ch -> {
            ch.write(ByteBuffer.wrap(new byte[3]));
            throw new IllegalStateException("a tensor was closed while saving");
        }));
        assertTrue(bug.getMessage().contains("closed"));
        assertArrayEquals(old, Files.readAllBytes(f));
        assertEquals(List.of(f), listing(dir), "no temporary file left behind");
    }

    @Test
    void aMissingDirectoryIsNamed(@TempDir Path dir) {
        Path f = dir.resolve("absent").resolve("x.bin");
        NoSuchFileException e = assertThrows(NoSuchFileException.class, () -> AtomicFiles.write(f, new byte[1]));
        assertTrue(e.getMessage().contains("absent"), e.getMessage());
    }
}
