package dev.cortado.graph;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.backend.kernels.NativeCodes;
import dev.cortado.ops.Elementwise;
import dev.cortado.ops.Generator;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import dev.cortado.testing.Reference;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.Function;
import org.junit.jupiter.api.Test;

/**
 * {@link ElementwiseFusion} and the fused interpreter: the fused graph against the unfused one
 * (which runs the eager kernels) and against the same function in float64, on fresh random
 * inputs, for every float dtype, with broadcasting, a transposed (non-contiguous) operand, odd
 * sizes, size-1 and empty dims, several outputs and scalar constants. Tolerances: float64 1e-12,
 * float32 1e-5 (the fused chain and the eager ops round the same way in float32); float16 and
 * bfloat16 round once on store where the unfused chain rounds after every op, so the fused result
 * is compared with the float64 function within one rounding of the dtype (plus the inputs'
 * own rounding, which both see) and with the unfused one within the chain's accumulated rounding.
 */
class ElementwiseFusionTest {
    private static final Generator GEN = Generator.seeded(77);

    private static Tensor rand(DType t, long... dims) {
        try (Tensor f = GEN.normal(0, 1, DType.FLOAT32, Device.CPU, dims)) {
            return f.to(t);
        }
    }

    /** The chain: broadcasting (y), a transposed operand (z), a scalar constant, a value read twice, two outputs. */
    private static Tensor[] chain(Tensor[] in) {
        try (Scope s = Scope.open()) {
            Tensor a = Elementwise.mul(in[0], in[1]);
            Tensor zt = in[2].transpose(0, 1);
            Tensor b = Elementwise.add(a, zt);
            Tensor c = Elementwise.silu(b);
            Tensor d = Elementwise.affine(c, 0.5, 1.0);
            Tensor e = Elementwise.mul(Elementwise.tanh(d), c);
            Tensor f = Elementwise.div(e, 3.0);
            Tensor g = Elementwise.sub(f, Elementwise.gelu(in[0]));
            return new Tensor[] {s.keep(g), s.keep(b)};
        }
    }

    private static Tensor[] run(Graph g, Tensor... inputs) {
        try (Executable e = new Executable(g)) {
            return e.run(inputs);
        }
    }

    private static Reference.Tol againstUnfused(DType t) {
        return switch (t) {
            case FLOAT64 -> new Reference.Tol(1e-12, 1e-13);
            case FLOAT32 -> new Reference.Tol(1e-5, 1e-6);
            case FLOAT16 -> new Reference.Tol(1e-2, 2e-3);
            default -> new Reference.Tol(6e-2, 2e-2);
        };
    }

    private static Reference.Tol againstFloat64(DType t) {
        return switch (t) {
            case FLOAT64 -> new Reference.Tol(1e-12, 1e-13);
            case FLOAT32 -> new Reference.Tol(1e-5, 1e-6);
            case FLOAT16 -> new Reference.Tol(1e-3, 1e-3);
            default -> new Reference.Tol(8e-3, 4e-3);
        };
    }

    private static void check(DType t, long rows, long cols, String what) {
        List<Tensor> owned = new ArrayList<>();
        try (Scope s = Scope.open()) {
            Tensor[] ex = {rand(t, rows, cols), rand(t, cols), rand(t, cols, rows)};
            List<TensorType> types = List.of(TensorType.of(ex[0]), TensorType.of(ex[1]), TensorType.of(ex[2]));
            try (Graph g = Capture.capture(ElementwiseFusionTest::chain, ex, types, Map.of()).verify();
                 Graph fused = new ElementwiseFusion().apply(g).verify()) {
                String text = fused.toString();
                assertEquals(1, count(text, "= fused_elementwise("), what + ":\n" + text);
                assertEquals(1, fused.nodes().size() - count(text, "= view."), what + ": one node besides the view:\n" + text);
                for (int trial = 0; trial < 2; trial++) {
                    Tensor[] in = {rand(t, rows, cols), rand(t, cols), rand(t, cols, rows)};
                    Tensor[] want = run(g, in);
                    Tensor[] got = run(fused, in);
                    Tensor[] in64 = new Tensor[3];
                    for (int i = 0; i < 3; i++) {
                        in64[i] = in[i].to(DType.FLOAT64);
                    }
                    Tensor[] exact = chain(in64);
                    for (int o = 0; o < 2; o++) {
                        assertEquals(want[o].shape(), got[o].shape());
                        assertEquals(t, got[o].dtype());
                        Reference.assertCloseChecked(want[o].toDoubleArray(), got[o].toDoubleArray(), againstUnfused(t),
                                what + ", output " + o + " against the unfused graph, trial " + trial);
                        Reference.assertCloseChecked(exact[o].toDoubleArray(), got[o].toDoubleArray(), againstFloat64(t),
                                what + ", output " + o + " against float64, trial " + trial);
                    }
                }
            }
        }
    }

    private static int count(String text, String what) {
        int n = 0;
        for (int i = text.indexOf(what); i >= 0; i = text.indexOf(what, i + 1)) {
            n++;
        }
        return n;
    }

    @Test
    void fusedChainMatchesUnfusedForEveryFloatDtype() {
        for (DType t : new DType[] {DType.FLOAT32, DType.FLOAT64, DType.FLOAT16, DType.BFLOAT16}) {
            check(t, 7, 13, t + " [7, 13]");
            check(t, 67, 301, t + " [67, 301] (tiles and a partial tile)"); // 67 * 301 > one tile per row
            check(t, 1, 5, t + " [1, 5]");
            check(t, 3, 1, t + " [3, 1]");
            check(t, 0, 4, t + " [0, 4] (empty)");
        }
    }

    @Test
    void unsupportedOpsEndTheChain() {
        Function<Tensor[], Tensor[]> fn = in -> {
            try (Scope s = Scope.open()) {
                Tensor a = Elementwise.exp(in[0]);
                Tensor m = Elementwise.gt(a, 1.0);                       // a comparison: not fusable
                Tensor b = Elementwise.where(m, a, in[0]);               // not fusable
                Tensor c = Elementwise.relu(Elementwise.mul(b, in[0]));  // fusable: mul + relu
                return new Tensor[] {s.keep(c)};
            }
        };
        try (Scope s = Scope.open()) {
            Tensor x = rand(DType.FLOAT32, 5, 9);
            try (Graph g = Capture.capture(fn, new Tensor[] {x}, List.of(TensorType.of(x)), Map.of()).verify();
                 Graph fused = new ElementwiseFusion().apply(g).verify()) {
                String text = fused.toString();
                assertTrue(text.contains("= exp(") && text.contains("= gt(") && text.contains("= where("), text);
                assertEquals(1, count(text, "= fused_elementwise("), text);
                assertTrue(text.contains("mul(r") && text.contains("relu(r"), text);
                Tensor fresh = rand(DType.FLOAT32, 5, 9);
                Reference.assertCloseChecked(run(g, fresh)[0].toDoubleArray(), run(fused, fresh)[0].toDoubleArray(),
                        Reference.tol(DType.FLOAT32), "chain around a comparison");
            }
        }
        // a program that names a comparison is refused before it reaches the kernel
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> FusedElementwise.program()
                .load(0, 0).load(1, 1).binary(NativeCodes.Binary.GT, 2, 0, 1).store(0, 2).build());
        assertTrue(e.getMessage().contains("not fusable"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> FusedElementwise.program()
                .load(0, 0).unary(NativeCodes.Unary.EXP, 1, 3, 0, 0).store(0, 1).build());
        assertTrue(e.getMessage().contains("before it is written"), e.getMessage());
    }

    @Test
    void badCallsNameTheOpAndTheInputs() {
        FusedElementwise.Program p = FusedElementwise.program().load(0, 0).load(1, 1).binary(NativeCodes.Binary.ADD, 2, 0, 1)
                .store(0, 2).build();
        assertEquals("{r0=in0; r1=in1; r2=add(r0, r1); out0=r2}", p.toString());
        try (Scope s = Scope.open()) {
            Tensor a = rand(DType.FLOAT32, 2, 3);
            Tensor b = rand(DType.FLOAT64, 2, 3);
            Tensor c = rand(DType.FLOAT32, 4, 3);
            Tensor i = Tensor.of(new long[] {1, 2, 3}, 3);
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> FusedElementwise.OP.call(p, a, b));
            assertTrue(e.getMessage().contains("fused_elementwise") && e.getMessage().contains("float64"), e.getMessage());
            e = assertThrows(IllegalArgumentException.class, () -> FusedElementwise.OP.call(p, a));
            assertTrue(e.getMessage().contains("reads 2 inputs"), e.getMessage());
            assertThrows(IllegalArgumentException.class, () -> FusedElementwise.OP.call(p, a, c));
            e = assertThrows(IllegalArgumentException.class, () -> FusedElementwise.OP.call(p, i, i));
            assertTrue(e.getMessage().contains("int64"), e.getMessage());
            // eager call of the op itself: a + b broadcast
            Tensor row = rand(DType.FLOAT32, 3);
            try (Tensor want = Elementwise.add(a, row); Tensor got = FusedElementwise.OP.call(p, a, row)) {
                Reference.assertCloseChecked(want.toDoubleArray(), got.toDoubleArray(), Reference.tol(DType.FLOAT32), "add");
            }
        }
    }
}
