package dev.cortado.tensor;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.backend.BackendUnavailableException;
import dev.cortado.ops.Elementwise;
import dev.cortado.ops.Indexing;
import dev.cortado.ops.LinearAlgebra;
import dev.cortado.ops.Normalization;
import dev.cortado.ops.Reductions;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;

/** Bad input gives an exception that names the op, the arguments, shapes and dtypes — never a crash. */
class BadInputTest {

    private static void assertMessage(Class<? extends Throwable> type, Executable call, String... fragments) {
        Throwable e = assertThrows(type, call);
        for (String f : fragments) {
            assertTrue(e.getMessage().contains(f), "message '" + e.getMessage() + "' should mention '" + f + "'");
        }
    }

    @Test
    void shapeMismatch() {
        try (var scope = Scope.open()) {
            Tensor a = Tensor.zeros(DType.FLOAT32, Device.CPU, 2, 3);
            Tensor b = Tensor.zeros(DType.FLOAT32, Device.CPU, 4);
            assertMessage(IllegalArgumentException.class, () -> Elementwise.add(a, b), "[2, 3]", "[4]", "broadcast");
            assertMessage(IllegalArgumentException.class, () -> LinearAlgebra.matmul(a, a), "matmul", "float32[2, 3]",
                    "inner dimensions");
            assertMessage(IllegalArgumentException.class, () -> Indexing.concat(0, a, b), "concat", "rank");
        }
    }

    @Test
    void dtypeMismatch() {
        try (var scope = Scope.open()) {
            Tensor ints = Tensor.of(new int[] {1, 2, 3, 4}, 2, 2);
            Tensor floats = Tensor.zeros(DType.FLOAT32, Device.CPU, 2, 2);
            assertMessage(IllegalArgumentException.class, () -> LinearAlgebra.matmul(ints, ints), "matmul", "int32[2, 2]");
            assertMessage(IllegalArgumentException.class, () -> Elementwise.where(floats, floats, floats), "where",
                    "condition must be bool", "float32[2, 2]");
            assertMessage(IllegalArgumentException.class, () -> Reductions.mean(ints), "mean", "int32[2, 2]");
            assertMessage(IllegalArgumentException.class, () -> Indexing.gather(floats, floats, 0), "gather", "indices",
                    "float32");
            assertMessage(IllegalArgumentException.class, () -> Normalization.softmax(ints, 0), "softmax", "floating point");
        }
    }

    @Test
    void axesOutOfRange() {
        try (var scope = Scope.open()) {
            Tensor a = Tensor.zeros(DType.FLOAT32, Device.CPU, 2, 3);
            assertMessage(IllegalArgumentException.class, () -> Reductions.sum(a, false, 2), "sum", "axis 2", "rank 2");
            assertMessage(IllegalArgumentException.class, () -> Reductions.sum(a, false, 0, -2), "sum", "repeated");
            assertMessage(IllegalArgumentException.class, () -> Normalization.softmax(a, -3), "softmax", "axis -3");
            assertMessage(IndexOutOfBoundsException.class, () -> a.transpose(0, 5), "dimension 5", "rank 2");
            assertMessage(IndexOutOfBoundsException.class, () -> a.select(1, 3), "index 3", "size 3");
        }
    }

    @Test
    void negativeSizes() {
        assertMessage(IllegalArgumentException.class, () -> Tensor.empty(DType.FLOAT32, Device.CPU, 2, -1),
                "negative size -1");
        try (var scope = Scope.open()) {
            Tensor a = Tensor.zeros(DType.FLOAT32, Device.CPU, 6);
            assertMessage(IllegalArgumentException.class, () -> a.reshape(-2, 3), "negative size -2");
            assertMessage(IllegalArgumentException.class, () -> a.slice(0, 0, 6, 0), "step");
        }
    }

    @Test
    void outOfRangeIndicesAreCaughtNatively() {
        try (var scope = Scope.open()) {
            Tensor table = Tensor.zeros(DType.FLOAT32, Device.CPU, 4, 2);
            Tensor idx = Tensor.of(new long[] {0, 9}, 2);
            assertMessage(IndexOutOfBoundsException.class, () -> Indexing.embedding(table, idx), "gather", "9");
        }
    }

    @Test
    void deviceMismatchAndMissingCudaAreClear() {
        Assumptions.assumeFalse(Device.cuda().isAvailable(), "this check is for machines without a usable GPU");
        assertMessage(BackendUnavailableException.class, () -> Tensor.zeros(DType.FLOAT32, Device.cuda(), 2),
                "cuda:0", "not usable");
        assertThrows(IllegalArgumentException.class, () -> Device.parse("tpu:0"));
    }
}
