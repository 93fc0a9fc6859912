package dev.cortado.nn;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.autograd.Autograd;
import dev.cortado.ops.Convolution;
import dev.cortado.ops.Convolution.ConvOptions;
import dev.cortado.sparse.MagnitudePruning;
import dev.cortado.sparse.SparseFormat;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Layout;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import dev.cortado.testing.Reference;
import dev.cortado.testing.Reference.Tol;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * SparseLinear and SparseConv2d against the dense layers holding the same (pruned) weights:
 * 2:4 through nm_matmul and unstructured through CSR, with and without bias, a 3-d input,
 * strides, asymmetric and "same" padding, dilation; Sparsify.convert of a Sequential; bad input.
 * float32 products summed in another order: within 1e-5 relative plus 1e-5 of the output's scale.
 */
class SparseLayersTest {
    private static final Tol F32 = new Tol(1e-5, 1e-5);

    private static Tensor input(Random r, long... dims) {
        return Tensor.of(Reference.uniform(r, (int) Reference.numel(dims), -1, 1), dims).to(DType.FLOAT32);
    }

    /** Prunes the weight in place: 2:4 or 70% unstructured (so the CSR holds only some entries). */
    private static void prune(Tensor weight, boolean nm) {
        var b = MagnitudePruning.builder(List.of(weight));
        try (MagnitudePruning p = nm ? b.nm(2, 4).build() : b.schedule(MagnitudePruning.Schedule.oneShot(0.7)).build()) {
            p.step(0);
        }
    }

    private static void assertSameOutputs(Tensor want, Tensor got, String what) {
        assertEquals(want.shape(), got.shape(), what + ": shape");
        double[] w = want.toDoubleArray();
        Reference.assertCloseChecked(w, got.toDoubleArray(), Reference.relativeTo(F32, w), what);
    }

    @Test
    void sparseLinearMatchesTheMaskedDenseLayer() {
        Random r = new Random(41);
        for (boolean nm : new boolean[] {true, false}) {
            for (boolean bias : new boolean[] {true, false}) {
                try (Scope s = Scope.open(); var g = Autograd.noGrad();
                     Linear dense = new Linear(24, 7, bias, ParamOptions.seeded(5))) {
                    prune(dense.weight(), nm);
                    try (SparseLinear sparse = new SparseLinear(dense, nm ? SparseFormat.nm(2, 4) : SparseFormat.csr())) {
                        assertEquals(nm ? Layout.NM : Layout.CSR, sparse.weight().layout());
                        assertEquals(nm ? 7 * 12 : Math.round(0.3 * 7 * 24), sparse.weight().nnz());
                        for (long[] dims : new long[][] {{5, 24}, {2, 3, 24}, {1, 24}}) {
                            Tensor x = input(r, dims);
                            assertSameOutputs(dense.forward(x), sparse.forward(x),
                                    (nm ? "2:4" : "csr") + " bias " + bias + " x " + Reference.dims(dims));
                        }
                        assertTrue(sparse.toString().contains(nm ? "nm 2:4" : "csr"), sparse.toString());
                    }
                }
            }
        }
    }

    @Test
    void sparseConv2dMatchesTheMaskedDenseConvolution() {
        Random r = new Random(42);
        ConvOptions[] options = {
            ConvOptions.builder().padding(1).build(),
            ConvOptions.builder().stride(2).padding(new long[] {0, 1}, new long[] {2, 0}).build(),
            ConvOptions.builder().dilation(2, 1).paddingSame().build(),
            ConvOptions.builder().stride(2, 3).paddingSame().build(),
            ConvOptions.defaults(),
        };
        for (ConvOptions o : options) {
            for (boolean nm : new boolean[] {true, false}) {
                // in 4, kernel 3x3: rows of 36 = 9 groups of 4
                try (Scope s = Scope.open(); var g = Autograd.noGrad();
                     Conv2d dense = new Conv2d(4, 6, new long[] {3, 3}, o, nm, ParamOptions.seeded(6))) {
                    prune(dense.weight(), nm);
                    try (SparseConv2d sparse = new SparseConv2d(dense, nm ? SparseFormat.nm(2, 4) : SparseFormat.csr())) {
                        Tensor x = input(r, 3, 4, 9, 8);
                        assertSameOutputs(Convolution.conv2d(x, dense.weight(), dense.bias(), o), sparse.forward(x),
                                (nm ? "2:4 " : "csr ") + o);
                    }
                }
            }
        }
    }

    @Test
    void sparsifyConvertsTheChosenLayers() {
        Random r = new Random(43);
        try (Scope s = Scope.open(); var g = Autograd.noGrad()) {
            ParamOptions p = ParamOptions.seeded(7);
            Conv2d conv = new Conv2d(2, 4, new long[] {2, 2}, ConvOptions.defaults(), true, p);
            Activation relu = Activation.relu();
            Linear fc = new Linear(4 * 4 * 4, 3, true, p);
            Sequential model = new Sequential(conv, relu, new Flatten(), fc);
            prune(conv.weight(), true);
            prune(fc.weight(), false);
            model.eval();
            Tensor x = input(r, 2, 2, 5, 5);
            Tensor want = model.forward(x);
            try (Sequential sparse = Sparsify.convert(model,
                    m -> m instanceof Conv2d ? SparseFormat.nm(2, 4) : SparseFormat.csr())) {
                assertTrue(sparse.get(0) instanceof SparseConv2d && sparse.get(3) instanceof SparseLinear, sparse.toString());
                assertSame(relu, sparse.get(1));
                assertTrue(conv.weight().isClosed(), "the converted dense layers are closed");
                assertSameOutputs(want, sparse.forward(x), "converted Sequential");
            }
            model.close();
        }
    }

    @Test
    void badInputIsRejected() {
        try (Scope s = Scope.open(); var g = Autograd.noGrad(); Linear l = new Linear(6, 2)) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> new SparseLinear(l, SparseFormat.nm(2, 4)));
            assertTrue(e.getMessage().contains("SparseFormat 2:4") && e.getMessage().contains("multiple of 4"), e.getMessage());
            try (SparseLinear csr = new SparseLinear(l, SparseFormat.csr())) {
                e = assertThrows(IllegalArgumentException.class, () -> csr.forward(Tensor.zeros(DType.FLOAT32, 3, 5)));
                assertTrue(e.getMessage().contains("SparseLinear: x float32[3, 5]"), e.getMessage());
                UnsupportedOperationException u = assertThrows(UnsupportedOperationException.class,
                        () -> csr.to(DType.BFLOAT16));
                assertTrue(u.getMessage().contains("SparseLinear.to(bfloat16)"), u.getMessage());
                assertSame(csr, csr.to(Device.CPU));
            }
            try (Conv2d grouped = new Conv2d(4, 4, new long[] {1, 1}, ConvOptions.builder().groups(2).build(), false,
                    ParamOptions.defaults())) {
                e = assertThrows(IllegalArgumentException.class, () -> new SparseConv2d(grouped, SparseFormat.csr()));
                assertTrue(e.getMessage().contains("SparseConv2d: only groups 1"), e.getMessage());
            }
        }
    }
}
