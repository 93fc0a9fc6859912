package dev.cortado.backend.cpu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.Cortado;
import dev.cortado.backend.DeviceOutOfMemoryException;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * The host-memory budget ({@code Cortado.setHostMemoryBudget}, {@code -Dcortado.hostMemoryBudget}):
 * an allocation past it throws a clear exception, freeing gives the bytes back, and nothing is
 * counted twice or lost when allocations fail.
 */
class HostMemoryBudgetTest {
    private static final long MIB = 1 << 20;

    @AfterEach
    void removeBudget() {
        Cortado.setHostMemoryBudget(0);
    }

    @Test
    void anAllocationPastTheBudgetThrowsNamingRequestBudgetAndUse() {
        long base = CpuBackend.budgetedBytes();
        long budget = base + 64 * MIB;
        Cortado.setHostMemoryBudget(budget);
        assertEquals(budget, Cortado.hostMemoryBudget());
        try (Tensor a = Tensor.empty(DType.FLOAT32, Device.CPU, 8 * MIB)) {       // 32 MiB: fits
            assertEquals(base + 32 * MIB, CpuBackend.budgetedBytes());
            DeviceOutOfMemoryException e = assertThrows(DeviceOutOfMemoryException.class,
                    () -> Tensor.empty(DType.FLOAT32, Device.CPU, 12 * MIB));          // 48 MiB: does not
            String m = e.getMessage();
            assertTrue(m.contains(Long.toString(48 * MIB)) && m.contains(Long.toString(budget))
                    && m.contains((base + 32 * MIB) + " bytes in use") && m.contains("cortado.hostMemoryBudget"), m);
            assertEquals(48 * MIB, e.requestedBytes());
            assertEquals(base + 32 * MIB, CpuBackend.budgetedBytes(), "a refused request counts nothing");
        }
        // freeing returned the 32 MiB: the 48 MiB request fits now
        assertEquals(base, CpuBackend.budgetedBytes());
        try (Tensor b = Tensor.empty(DType.FLOAT32, Device.CPU, 12 * MIB)) {
            assertEquals(base + 48 * MIB, CpuBackend.budgetedBytes());
        }
        assertEquals(base, CpuBackend.budgetedBytes());
    }

    @Test
    void aRunawayLoopStopsAtTheBudgetInsteadOfExhaustingTheMachine() {
        long base = CpuBackend.budgetedBytes();
        Cortado.setHostMemoryBudget(base + 100 * MIB);
        List<Tensor> hoard = new ArrayList<>();
        try {
            DeviceOutOfMemoryException e = assertThrows(DeviceOutOfMemoryException.class, () -> {
                while (true) {
                    hoard.add(Tensor.empty(DType.UINT8, Device.CPU, 8 * MIB));
                }
            });
            assertEquals(12, hoard.size(), "12 blocks of 8 MiB fit in 100 MiB; the 13th does not: " + e.getMessage());
            // an absurd request (a shape product's worth of terabytes) is refused the same way, before any
            // native call: no page is touched, no OOM killer
            DeviceOutOfMemoryException huge = assertThrows(DeviceOutOfMemoryException.class,
                    () -> Tensor.empty(DType.FLOAT32, Device.CPU, 1L << 38));
            assertTrue(huge.getMessage().contains("host memory budget"), huge.getMessage());
        } finally {
            hoard.forEach(Tensor::close);
        }
        assertEquals(base, CpuBackend.budgetedBytes());
        // lowering the budget below what is in use refuses new allocations only
        try (Tensor keep = Tensor.empty(DType.UINT8, Device.CPU, 4 * MIB)) {
            Cortado.setHostMemoryBudget(base + MIB);
            assertThrows(DeviceOutOfMemoryException.class, () -> Tensor.empty(DType.UINT8, Device.CPU, 16));
            assertEquals(4 * MIB, keep.numel());
        }
        try (Tensor small = Tensor.empty(DType.UINT8, Device.CPU, 16)) {
            assertEquals(16, small.numel());
        }
    }

    @Test
    void noBudgetMeansNoLimitAndBadValuesAreRefused() {
        assertEquals(0, Cortado.hostMemoryBudget());
        assertThrows(IllegalArgumentException.class, () -> Cortado.setHostMemoryBudget(-1));
        long base = CpuBackend.budgetedBytes();
        try (Tensor t = Tensor.zeros(DType.FLOAT64, Device.CPU, 1000)) {
            assertEquals(base + 8000, CpuBackend.budgetedBytes(), "bytes are counted with no budget too");
        }
        assertEquals(base, CpuBackend.budgetedBytes());
    }

    @Test
    void theStartupPropertyTakesByteCountsWithSuffixes() {
        assertEquals(1073741824L, CpuBackend.parseBytes("1073741824", "p"));
        assertEquals(512 * MIB, CpuBackend.parseBytes("512m", "p"));
        assertEquals(8L << 30, CpuBackend.parseBytes("8G", "p"));
        assertEquals(8L << 30, CpuBackend.parseBytes(" 8GiB ", "p"));
        assertEquals(64L << 10, CpuBackend.parseBytes("64k", "p"));
        assertEquals(2L << 40, CpuBackend.parseBytes("2t", "p"));
        for (String bad : new String[] {"", "m", "-1g", "1.5g", "lots", "99999999999t"}) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> CpuBackend.parseBytes(bad, "p"), bad);
            assertTrue(e.getMessage().contains("not a byte count"), e.getMessage());
        }
        String old = System.getProperty(CpuBackend.BUDGET_PROPERTY);
        try {
            System.setProperty(CpuBackend.BUDGET_PROPERTY, "3g");
            assertEquals(3L << 30, CpuBackend.startupBudget());
            System.clearProperty(CpuBackend.BUDGET_PROPERTY);
            assertEquals(0, CpuBackend.startupBudget());
        } finally {
            if (old != null) {
                System.setProperty(CpuBackend.BUDGET_PROPERTY, old);
            }
        }
    }
}
