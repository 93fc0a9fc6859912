package dev.cortado.tensor;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.Cortado;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * {@link MemoryPattern}: a recorded allocation sequence replays from one arena with no allocation,
 * the plan shares memory only between allocations whose lifetimes do not overlap, and a replay
 * that strays from the recording (another size, more allocations, a tensor held longer than
 * recorded) falls back to the allocator instead of handing out memory in use.
 */
class MemoryPatternTest {
    /** a (freed), b, c (a's memory may be reused by c), b and c freed. */
    private static void program(long[] sizes) {
        Tensor a = Tensor.empty(DType.FLOAT32, Device.CPU, sizes[0]);
        a.fillWith(1);
        a.close();
        Tensor b = Tensor.empty(DType.FLOAT32, Device.CPU, sizes[1]);
        Tensor c = Tensor.empty(DType.FLOAT32, Device.CPU, sizes[2]);
        b.fillWith(2);
        c.fillWith(3);
        assertEquals(2, b.toFloatArray()[0]);
        b.close();
        c.close();
    }

    @Test
    void aReplayAllocatesNothingAndReusesFreedMemory() {
        long[] sizes = {100_000, 50_000, 100_000};
        MemoryPattern pattern;
        try (MemoryPattern.Recording r = MemoryPattern.record(Device.CPU)) {
            program(sizes);
            pattern = r.finish();
        }
        assertEquals(3, pattern.allocations());
        // a and c never live at once: the arena holds b and one of them
        assertEquals((50_000 + 100_000) * 4, pattern.arenaBytes(), pattern.toString());
        try (MemoryPattern.Arena arena = pattern.newArena()) {
            Cortado.AllocationCounts before = Cortado.hostAllocationCounts();
            for (int i = 0; i < 10; i++) {
                try (MemoryPattern.Replay replay = arena.replay()) {
                    program(sizes);
                    replay.close();
                    assertFalse(replay.diverged());
                }
            }
            assertEquals(0, Cortado.hostAllocationCounts().minus(before).allocations());
            assertTrue(arena.reusable());
        }
    }

    @Test
    void aReplayThatStraysFallsBackToTheAllocator() {
        long[] sizes = {1000, 2000, 1000};
        MemoryPattern pattern;
        try (MemoryPattern.Recording r = MemoryPattern.record(Device.CPU)) {
            program(sizes);
            pattern = r.finish();
        }
        try (MemoryPattern.Arena arena = pattern.newArena()) {
            try (MemoryPattern.Replay replay = arena.replay()) {
                program(new long[] {1000, 2001, 1000});
                assertTrue(replay.diverged(), "another size");
            }
            try (MemoryPattern.Replay replay = arena.replay()) {
                program(sizes);
                Tensor extra = Tensor.zeros(DType.FLOAT32, Device.CPU, 10);
                extra.close();
                assertTrue(replay.diverged(), "one allocation more than recorded");
            }
            try (MemoryPattern.Replay replay = arena.replay()) {
                Tensor.empty(DType.FLOAT32, Device.CPU, 1000).close();
                replay.close();
                assertTrue(replay.diverged(), "fewer allocations than recorded");
            }
        }
    }

    /** c reuses a's memory in the plan; a replay that still holds a when c is made must not give c a's memory. */
    @Test
    void memoryStillInUseIsNeverHandedOutAgain() {
        MemoryPattern pattern;
        try (MemoryPattern.Recording r = MemoryPattern.record(Device.CPU)) {
            Tensor.empty(DType.FLOAT32, Device.CPU, 4096).close();
            Tensor.empty(DType.FLOAT32, Device.CPU, 4096).close();
            pattern = r.finish();
        }
        assertEquals(4096 * 4, pattern.arenaBytes(), "the two share one slot");
        SplittableRandom rnd = new SplittableRandom(2);
        float[] va = new float[4096];
        float[] vb = new float[4096];
        for (int i = 0; i < va.length; i++) {
            va[i] = (float) rnd.nextDouble();
            vb[i] = (float) rnd.nextDouble();
        }
        try (MemoryPattern.Arena arena = pattern.newArena();
             Tensor sa = Tensor.of(va, Device.CPU, 4096);
             Tensor sb = Tensor.of(vb, Device.CPU, 4096)) {
            Tensor a;
            Tensor b;
            try (MemoryPattern.Replay replay = arena.replay()) {
                a = Tensor.empty(DType.FLOAT32, Device.CPU, 4096);
                a.copyFrom(sa);
                b = Tensor.empty(DType.FLOAT32, Device.CPU, 4096); // a is still open here
                b.copyFrom(sb);
                assertTrue(replay.diverged());
            }
            assertArrayEquals(va, a.toFloatArray(), "a is intact");
            assertArrayEquals(vb, b.toFloatArray());
            assertFalse(arena.reusable(), "a, a slice of the arena, is still open");
            assertThrows(IllegalStateException.class, arena::replay);
            a.close();
            b.close();
            assertTrue(arena.reusable());
        }
    }

    /** Closing an arena while one of its tensors is open keeps the memory until that tensor is closed. */
    @Test
    void anArenaOutlivedByItsTensorFreesWhenTheTensorCloses() {
        MemoryPattern pattern;
        try (MemoryPattern.Recording r = MemoryPattern.record(Device.CPU)) {
            Tensor.empty(DType.FLOAT64, Device.CPU, 300).close();
            pattern = r.finish();
        }
        long live = Cortado.memoryStats(Device.CPU).liveAllocations();
        MemoryPattern.Arena arena = pattern.newArena();
        Tensor kept;
        try (MemoryPattern.Replay replay = arena.replay()) {
            kept = Tensor.full(7, DType.FLOAT64, Device.CPU, 300);
        }
        arena.close();
        assertEquals(7, kept.toDoubleArray()[299]);
        assertEquals(live + 1, Cortado.memoryStats(Device.CPU).liveAllocations(), "the arena's memory is still held");
        kept.close();
        assertEquals(live, Cortado.memoryStats(Device.CPU).liveAllocations(), "freed with its last tensor");
    }
}
