package dev.cortado.tensor;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Untrusted sizes (docs/reliability.md#untrusted-inputs): element counts, byte counts and view
 * extents that do not fit in a long are refused with an {@link IllegalArgumentException} before
 * anything is allocated or read. Without these checks the products wrapped around: a float64
 * tensor of 2^61 elements asked for 2^64 mod 2^64 = 0 bytes and got them, and a view whose last
 * element lies 2^63 elements away passed the bounds check with a negative extent; either then read
 * or wrote outside its memory.
 */
class SizeOverflowTest {

    @Test
    void shapeProductsThatOverflowAreRefused() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> Shape.of(1L << 31, 1L << 31, 2));
        assertTrue(e.getMessage().contains("[2147483648, 2147483648, 2]") && e.getMessage().contains("2^63"),
                e.getMessage());
        // a size 0 anywhere makes it empty, however large the others
        assertEquals(0, Shape.of(1L << 40, 1L << 40, 0).numel());
        assertEquals(0, Shape.of(0, 1L << 40, 1L << 40).numel());
        IllegalArgumentException negative = assertThrows(IllegalArgumentException.class,
                () -> Shape.of(1L << 40, 1L << 40, -1));
        assertTrue(negative.getMessage().contains("negative size -1"), negative.getMessage());
        assertEquals(Long.MAX_VALUE, Shape.of(Long.MAX_VALUE).numel());
    }

    @Test
    void byteCountsThatOverflowAreRefusedBeforeAllocation() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> DType.FLOAT64.bytesFor(1L << 61));
        assertTrue(e.getMessage().contains("float64") && e.getMessage().contains("2305843009213693952"),
                e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> DType.FLOAT32.bytesFor(-1));
        assertEquals(Long.MAX_VALUE / 2 + 1, DType.INT4.bytesFor(Long.MAX_VALUE));
        assertEquals((Long.MAX_VALUE / 8) * 8, DType.FLOAT64.bytesFor(Long.MAX_VALUE / 8));
        // the tensor itself: refused before the allocator sees a byte count
        for (DType t : new DType[] {DType.FLOAT64, DType.FLOAT32, DType.BFLOAT16}) {
            IllegalArgumentException ee = assertThrows(IllegalArgumentException.class,
                    () -> Tensor.empty(t, Device.CPU, 1L << 62));
            assertTrue(ee.getMessage().contains(t.toString()), ee.getMessage());
        }
    }

    @Test
    void viewsWhoseExtentOverflowsAreRefused() {
        try (Tensor base = Tensor.zeros(DType.FLOAT32, Device.CPU, 4)) {
            // (3 - 1) * 2^62 = 2^63: wrapped to Long.MIN_VALUE, it passed as "before the end"
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> base.asStrided(DType.FLOAT32, Shape.of(3), new long[] {1L << 62}, 0));
            assertTrue(e.getMessage().contains("reaches past its storage"), e.getMessage());
            assertThrows(IllegalArgumentException.class,
                    () -> base.asStrided(DType.FLOAT32, Shape.of(2, 2), new long[] {Long.MAX_VALUE, 1}, 0));
            assertThrows(IllegalArgumentException.class,
                    () -> base.asStrided(DType.FLOAT32, Shape.of(2), new long[] {1}, Long.MAX_VALUE));
            // the last element exactly: fine; one past it: refused
            try (Tensor ok = base.asStrided(DType.FLOAT32, Shape.of(2), new long[] {3}, 0)) {
                assertEquals(2, ok.numel());
            }
            assertThrows(IllegalArgumentException.class,
                    () -> base.asStrided(DType.FLOAT32, Shape.of(2), new long[] {4}, 0));
        }
    }
}
