package dev.cortado.tensor;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.concurrent.ThreadLocalRandom;

/**
 * Files written so that a crash, a full disk or an I/O error at any point leaves either the old
 * file or the new one, complete, never a mix: the one way Cortado writes a file others will read
 * back (checkpoints and safetensors, ONNX plan caches, the convolution autotune cache;
 * docs/reliability.md#crash-safe-files). It lives in the lowest layer, beside {@link MappedFile},
 * so that every layer that writes a file (ops' autotune cache, io, onnx) can use it.
 *
 * <p>The content goes to a new temporary file {@code .NAME.RANDOM.tmp} in the target's directory
 * (so the rename below stays on one file system), which is forced to disk and renamed over the
 * target: an atomic rename where the file system supports it, else a replacing move. The
 * directory is then forced so the rename itself survives a power loss, where the platform can open
 * a directory. On any failure the temporary file is deleted, the exception propagates and the
 * target is untouched.
 */
public final class AtomicFiles {
    private AtomicFiles() {
    }

    /** Writes a file's content through a channel positioned at 0 (it may seek and overwrite). */
    @FunctionalInterface
    public interface ChannelWriter {
        void write(FileChannel channel) throws IOException;
    }

    /**
     * Replaces {@code target} with what {@code body} writes, atomically.
     *
     * @throws NoSuchFileException if the target's directory does not exist
     * @throws IOException from the writing, forcing or renaming (the target is then unchanged)
     */
    public static void write(Path target, ChannelWriter body) throws IOException {
        Path abs = target.toAbsolutePath();
        Path dir = abs.getParent();
        if (dir == null || !Files.isDirectory(dir)) {
            throw new NoSuchFileException(String.valueOf(dir), null, "the directory of " + target + " does not exist");
        }
        Path tmp = createTemp(dir, abs.getFileName().toString());
        try {
            try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.WRITE)) {
                body.write(ch);
                ch.force(true);
            }
            try {
                Files.move(tmp, abs, StandardCopyOption.ATOMIC_MOVE);
            } catch (AtomicMoveNotSupportedException e) {
                Files.move(tmp, abs, StandardCopyOption.REPLACE_EXISTING);
            }
        } catch (IOException | RuntimeException | Error e) {
            try {
                Files.deleteIfExists(tmp);
            } catch (IOException d) {
                e.addSuppressed(d);
            }
            throw e;
        }
        forceDirectory(dir);
    }

    /** Replaces {@code target} with {@code bytes}, atomically (see {@link #write(Path, ChannelWriter)}). */
    public static void write(Path target, byte[] bytes) throws IOException {
        write(target, ch -> {
            ByteBuffer b = ByteBuffer.wrap(bytes);
            while (b.hasRemaining()) {
                ch.write(b);
            }
        });
    }

    /** A new empty file {@code .NAME.RANDOM.tmp} in {@code dir}, created with default permissions. */
    private static Path createTemp(Path dir, String name) throws IOException {
        for (int attempt = 0; ; attempt++) {
            Path tmp = dir.resolve("." + name + "." + Long.toHexString(ThreadLocalRandom.current().nextLong()) + ".tmp");
            try {
                return Files.createFile(tmp);
            } catch (FileAlreadyExistsException e) {
                if (attempt >= 100) {
                    throw e;
                }
            }
        }
    }

    private static void forceDirectory(Path dir) {
        try (FileChannel d = FileChannel.open(dir, StandardOpenOption.READ)) {
            d.force(true);
        } catch (IOException | UnsupportedOperationException e) {
            // Not possible on this platform (e.g. Windows): the rename is still atomic; only its
            // durability across a power loss right after the write depends on the file system.
        }
    }
}
