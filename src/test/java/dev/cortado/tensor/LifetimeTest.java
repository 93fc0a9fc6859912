package dev.cortado.tensor;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.backend.cpu.CpuBackend;
import dev.cortado.ops.Elementwise;
import dev.cortado.testing.LeakCheck;
import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/** Deterministic freeing: close, scopes, views keeping storage alive, the Cleaner safety net, leaks. */
class LifetimeTest {

    @Test
    void closeFreesStorageOnceTheLastViewIsClosed() {
        long before = CpuBackend.allocatedBytes();
        Tensor t = Tensor.zeros(DType.FLOAT32, Device.CPU, 1000);
        assertEquals(before + 4000, CpuBackend.allocatedBytes());
        Tensor view = t.narrow(0, 10, 5);
        t.close();
        assertEquals(before + 4000, CpuBackend.allocatedBytes(), "a live view keeps the storage");
        assertEquals(5, view.toFloatArray().length);
        view.close();
        assertEquals(before, CpuBackend.allocatedBytes());
        t.close(); // idempotent
        assertEquals(before, CpuBackend.allocatedBytes());
    }

    @Test
    void scopeFreesEverythingExceptWhatIsKept() {
        long before = CpuBackend.allocatedBytes();
        Tensor kept;
        try (var outer = Scope.open()) {
            Tensor survivor;
            try (var inner = Scope.open()) {
                Tensor a = Tensor.ones(DType.FLOAT32, Device.CPU, 64);
                Tensor b = Elementwise.add(a, a);
                Tensor c = b.reshape(8, 8);
                survivor = inner.keep(Elementwise.mul(c, 3.0));
                assertEquals(3, inner.size(), "a, b and c are owned; the kept product and the closed scalar are not");
            }
            assertFalse(survivor.isClosed());
            assertEquals(6f, survivor.toFloatArray()[0]);
            kept = outer.keep(survivor);
        }
        assertFalse(kept.isClosed(), "kept out of the outermost scope: owned by the caller");
        assertEquals(before + 64 * 4, CpuBackend.allocatedBytes());
        kept.close();
        assertEquals(before, CpuBackend.allocatedBytes());
    }

    @Test
    void scopeClosesIntermediatesEvenWhenAnOpFails() {
        long before = CpuBackend.allocatedBytes();
        assertThrows(IllegalArgumentException.class, () -> {
            try (var scope = Scope.open()) {
                Tensor a = Tensor.ones(DType.FLOAT32, Device.CPU, 3);
                Tensor b = Tensor.ones(DType.FLOAT32, Device.CPU, 4);
                Elementwise.add(a, b);
            }
        });
        assertEquals(before, CpuBackend.allocatedBytes());
    }

    @Test
    void largeHostBlocksAreReusedFromTheCache() {
        CpuBackend.emptyCache();
        long before = CpuBackend.allocatedBytes();
        long address;
        try (Tensor t = Tensor.empty(DType.FLOAT32, Device.CPU, 1 << 20)) {
            address = t.dataAddress();
        }
        assertEquals(before, CpuBackend.allocatedBytes(), "cached bytes are not counted as allocated");
        assertTrue(CpuBackend.cachedBytes() >= 4L << 20);
        try (Tensor again = Tensor.empty(DType.FLOAT32, Device.CPU, (1 << 20) - 100)) {
            assertEquals(address, again.dataAddress(), "same size class: the cached block comes back");
        }
        CpuBackend.emptyCache();
        assertEquals(0, CpuBackend.cachedBytes());
    }

    @Test
    void scopesMustCloseInnermostFirst() {
        Scope outer = Scope.open();
        Scope inner = Scope.open();
        assertThrows(IllegalStateException.class, outer::close);
        inner.close();
        outer.close();
    }

    @Test
    void useAfterCloseIsAClearError() {
        Tensor t = Tensor.zeros(DType.FLOAT32, Device.CPU, 2, 3);
        t.close();
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> Elementwise.exp(t));
        assertTrue(e.getMessage().contains("exp") && e.getMessage().contains("float32[2, 3]")
                && e.getMessage().contains("closed"), e.getMessage());
        assertThrows(IllegalStateException.class, t::toFloatArray);
        assertThrows(IllegalStateException.class, () -> t.reshape(6));
    }

    /**
     * The safety net frees, counts and logs unclosed tensors. It runs in a child JVM: its 100
     * deliberate leaks would otherwise fail this class ({@link dev.cortado.testing.LeakCheck})
     * and put 100 warnings in the build log, where any warning must mean a real leak.
     */
    @Test
    void cleanerFreesCountsAndLogsLeakedTensors() throws IOException, InterruptedException {
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        String cp = System.getProperty("java.class.path");
        String mp = System.getProperty("jdk.module.path");
        if (mp != null && !mp.isEmpty()) {
            cp = cp + File.pathSeparator + mp;
        }
        Process p = new ProcessBuilder(java, "-Xmx256m", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp", cp,
                LeakingChild.class.getName()).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(60, TimeUnit.SECONDS), out);
        assertEquals(0, p.exitValue(), out);
        assertTrue(out.contains("leaked 100 returned true"), out);
        long warnings = out.lines().filter(l -> l.contains("was not closed; freed by the safety net")).count();
        assertEquals(100, warnings, "one warning per leaked tensor:\n" + out);
        assertTrue(out.contains("float32[1024]"), "the warning names dtype and shape:\n" + out);
    }

    /** Leaks 100 tensors, then waits for the safety net; prints what it counted. */
    static final class LeakingChild {
        public static void main(String[] args) throws InterruptedException {
            long before = CpuBackend.allocatedBytes();
            long leakedBefore = Tensor.LeakCounter.leaked();
            for (int i = 0; i < 100; i++) {
                Tensor.zeros(DType.FLOAT32, Device.CPU, 1024); // never closed
            }
            long deadline = System.nanoTime() + 30_000_000_000L;
            while ((CpuBackend.allocatedBytes() > before || Tensor.LeakCounter.leaked() < leakedBefore + 100)
                    && System.nanoTime() < deadline) {
                System.gc();
                Thread.sleep(20);
            }
            System.out.println("leaked " + (Tensor.LeakCounter.leaked() - leakedBefore) + " returned "
                    + (CpuBackend.allocatedBytes() == before));
        }
    }

    @Test
    void millionAllocateFreeCyclesReturnToBaseline() throws InterruptedException {
        LeakCheck.settle(); // nothing left for the safety net to free while we count
        long bytesBefore = CpuBackend.allocatedBytes();
        long liveBefore = CpuBackend.liveAllocations();
        long leakedBefore = Tensor.LeakCounter.leaked();
        for (int i = 0; i < 1_000_000; i++) {
            try (Tensor t = Tensor.empty(DType.FLOAT32, Device.CPU, 1 + (i % 64))) {
                if (i % 100_000 == 0) {
                    t.fillWith(i);
                }
            }
        }
        for (int i = 0; i < 10_000; i++) {
            try (var scope = Scope.open()) {
                Tensor a = Tensor.ones(DType.FLOAT32, Device.CPU, 16);
                Elementwise.add(a, a).reshape(4, 4).transpose(0, 1).contiguous();
            }
        }
        assertEquals(bytesBefore, CpuBackend.allocatedBytes());
        assertEquals(liveBefore, CpuBackend.liveAllocations());
        assertEquals(leakedBefore, Tensor.LeakCounter.leaked(), "nothing reached the safety net");
    }
}
