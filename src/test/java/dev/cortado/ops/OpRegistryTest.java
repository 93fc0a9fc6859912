package dev.cortado.ops;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.DeviceType;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Shape;
import dev.cortado.tensor.Tensor;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * The registry holds every declaration, each with a CPU kernel. (That docs/reference/ops.md lists every op with its
 * backends is checked by {@code opinfo.OpInfoTest}, which generates it.)
 */
class OpRegistryTest {

    @Test
    void everyOpHasACpuKernel() {
        List<Op<?>> ops = OpRegistry.all();
        assertTrue(ops.size() >= 45, "ops registered: " + ops.size());
        for (Op<?> op : ops) {
            assertTrue(op.backends().contains(DeviceType.CPU), op.name() + " has no CPU kernel");
        }
        assertTrue(OpRegistry.get("matmul") == LinearAlgebra.MATMUL_OP);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> OpRegistry.get("nope"));
        assertTrue(e.getMessage().contains("matmul"), "lists the declared ops");
    }

    @Test
    void shapeRulesRunWithoutKernels() {
        try (var scope = Scope.open()) {
            Tensor a = Tensor.empty(DType.BFLOAT16, Device.CPU, 4, 1, 3);
            Tensor b = Tensor.empty(DType.FLOAT16, Device.CPU, 5, 1);
            TensorSpec[] spec = Elementwise.ADD_OP.infer(null, a, b);
            assertEquals(Shape.of(4, 5, 3), spec[0].shape());
            assertEquals(DType.FLOAT32, spec[0].dtype());
            TensorSpec[] mm = LinearAlgebra.MATMUL_OP.infer(null, Tensor.empty(DType.FLOAT32, Device.CPU, 7, 1, 2, 3),
                    Tensor.empty(DType.FLOAT32, Device.CPU, 6, 3, 5));
            assertEquals(Shape.of(7, 6, 2, 5), mm[0].shape());
        }
    }

    @Test
    void declarationsRejectWrongArity() {
        try (var scope = Scope.open()) {
            Tensor a = Tensor.zeros(DType.FLOAT32, Device.CPU, 2);
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> Elementwise.ADD_OP.call(null, a));
            assertTrue(e.getMessage().startsWith("add: expected 2 inputs [a, b]"), e.getMessage());
        }
    }
}
