package dev.cortado.tensor;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.backend.cpu.CpuBackend;
import dev.cortado.ops.Elementwise;
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

    @Test
    void cleanerFreesAndCountsLeakedTensors() throws InterruptedException {
        long before = CpuBackend.allocatedBytes();
        long leakedBefore = Tensor.LeakCounter.leaked();
        for (int i = 0; i < 100; i++) {
            Tensor.zeros(DType.FLOAT32, Device.CPU, 1024); // never closed
        }
        long deadline = System.nanoTime() + 20_000_000_000L;
        while (CpuBackend.allocatedBytes() > before && System.nanoTime() < deadline) {
            System.gc();
            Thread.sleep(20);
        }
        assertEquals(before, CpuBackend.allocatedBytes(), "the safety net returned the leaked memory");
        assertEquals(leakedBefore + 100, Tensor.LeakCounter.leaked());
    }

    @Test
    void millionAllocateFreeCyclesReturnToBaseline() throws InterruptedException {
        // let the safety net finish with garbage other tests left, so the baseline is stable
        for (int i = 0; i < 3; i++) {
            System.gc();
            Thread.sleep(50);
        }
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
