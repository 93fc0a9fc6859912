package dev.cortado.nn;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotSame;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** The module tree: names and order, state round trips and mismatch errors, devices, modes, lifetime. */
class ModuleTest {
    /** A tiny language model: embedding, blocks in a ModuleList, final norm, head. */
    static final class TinyLm extends Module {
        final ModuleList<TransformerBlock> layers = new ModuleList<>();

        TinyLm(long seed, int vocab, int dim, int blocks) {
            ParamOptions p = ParamOptions.seeded(seed);
            registerModule("embed", new Embedding(vocab, dim, p));
            registerModule("layers", layers);
            for (int i = 0; i < blocks; i++) {
                layers.add(TransformerBlock.builder(dim, 2).llama(2 * dim).params(p).build());
            }
            registerModule("norm", new RMSNorm(new long[] {dim}, 1e-6, true, p));
            registerModule("head", new Linear(dim, vocab, false, p));
        }

        @Override
        public Tensor forward(Tensor tokens) {
            Tensor h = child("embed").forward(tokens);
            for (TransformerBlock b : layers) {
                Tensor next = b.forward(h);
                h.close();
                h = next;
            }
            Tensor last = h;
            try (last; Tensor n = child("norm").forward(last)) {
                return child("head").forward(n);
            }
        }
    }

    static Sequential mlp(long seed) {
        ParamOptions p = ParamOptions.seeded(seed);
        return new Sequential(new Linear(3, 4, true, p), Activation.relu(), new BatchNorm1d(4),
                new Linear(4, 2, false, p));
    }

    @Test
    void namesAreDottedAndOrdered() {
        try (Sequential m = mlp(1)) {
            assertEquals(List.of("0.weight", "0.bias", "2.weight", "2.bias", "3.weight"),
                    List.copyOf(m.namedParameters().keySet()));
            assertEquals(List.of("0.weight", "0.bias", "2.weight", "2.bias", "2.running_mean", "2.running_var",
                    "2.num_batches_tracked", "3.weight"), List.copyOf(m.state().keySet()));
            assertEquals(3 * 4 + 4 + 4 + 4 + 4 * 2, m.numParameters());
            for (Tensor p : m.parameters()) {
                assertTrue(p.requiresGrad() && p.isLeaf());
            }
            assertFalse(m.namedBuffers().get("2.running_mean").requiresGrad());
        }
        try (TinyLm lm = new TinyLm(1, 11, 8, 2)) {
            List<String> names = List.copyOf(lm.namedParameters().keySet());
            assertEquals("embed.weight", names.get(0));
            assertEquals("layers.0.norm1.weight", names.get(1));
            assertEquals("layers.0.attn.wq.weight", names.get(2));
            assertTrue(names.contains("layers.1.mlp.gate.weight"));
            assertEquals("head.weight", names.get(names.size() - 1));
            assertTrue(lm.namedModules().containsKey("layers.1.attn.wo"));
            String tree = lm.toString();
            assertTrue(tree.contains("(attn): MultiheadAttention(dim=8, heads=2"), tree);
            assertTrue(tree.contains("(head): Linear(in=8, out=11, bias=false)"), tree);
        }
    }

    @Test
    void stateIsTheModulesOwnTensors() {
        try (Sequential m = mlp(1)) {
            LinkedHashMap<String, Tensor> st = m.state();
            assertSame(((Linear) m.get(0)).weight(), st.get("0.weight"));
            st.get("3.weight").fillWith(0.5);
            assertEquals(0.5, ((Linear) m.get(3)).weight().toDoubleArray()[0]);
        }
    }

    @Test
    void loadStateRoundTrip() {
        try (Scope s = Scope.open(); TinyLm a = new TinyLm(1, 11, 8, 2); TinyLm b = new TinyLm(2, 11, 8, 2)) {
            Tensor tokens = Tensor.of(new long[] {1, 5, 10, 0, 3, 3}, 2, 3);
            double[] ya = a.forward(tokens).toDoubleArray();
            assertFalse(java.util.Arrays.equals(ya, b.forward(tokens).toDoubleArray()), "different seeds differ");
            b.loadState(a.state(), true);
            assertArrayEquals(ya, b.forward(tokens).toDoubleArray());
            for (Map.Entry<String, Tensor> e : a.state().entrySet()) {
                assertArrayEquals(e.getValue().toDoubleArray(), b.state().get(e.getKey()).toDoubleArray(), e.getKey());
                assertNotSame(e.getValue(), b.state().get(e.getKey()));
            }
        }
    }

    @Test
    void strictMismatchListsEverythingAndCopiesNothing() {
        try (Scope s = Scope.open(); Sequential a = mlp(1); Sequential b = mlp(2)) {
            double[] before = ((Linear) b.get(0)).weight().toDoubleArray();
            Map<String, Tensor> st = new LinkedHashMap<>(a.state());
            st.remove("2.bias");
            st.put("4.weight", Tensor.zeros(DType.FLOAT32, 2, 2));
            st.put("3.weight", Tensor.zeros(DType.FLOAT32, 3, 4));
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> b.loadState(st, true));
            String msg = e.getMessage();
            assertTrue(msg.contains("checkpoint of another architecture"), msg);
            assertTrue(msg.contains("missing from the checkpoint (1): [2.bias]"), msg);
            assertTrue(msg.contains("unexpected in the checkpoint (1): [4.weight]"), msg);
            assertTrue(msg.contains("3.weight: checkpoint float32[3, 4] vs module float32[2, 4]"), msg);
            assertArrayEquals(before, ((Linear) b.get(0)).weight().toDoubleArray(), "nothing copied");

            // non-strict: missing and unexpected are ignored, shapes must still match
            assertThrows(IllegalArgumentException.class, () -> b.loadState(st, false));
            st.put("3.weight", a.state().get("3.weight"));
            b.loadState(st, false);
            assertArrayEquals(((Linear) a.get(0)).weight().toDoubleArray(), ((Linear) b.get(0)).weight().toDoubleArray());

            // dtype: an error when strict, converted otherwise
            Map<String, Tensor> st64 = new LinkedHashMap<>(a.state());
            st64.put("0.bias", Tensor.of(new double[] {1, 2, 3, 4}, 4));
            IllegalArgumentException d = assertThrows(IllegalArgumentException.class, () -> b.loadState(st64, true));
            assertTrue(d.getMessage().contains("0.bias: checkpoint dtype float64 vs module float32"), d.getMessage());
            b.loadState(st64, false);
            assertArrayEquals(new double[] {1, 2, 3, 4}, ((Linear) b.get(0)).bias().toDoubleArray());
        }
    }

    @Test
    void toDeviceAndDType() {
        try (Sequential m = mlp(1)) {
            Map<String, Tensor> before = m.state();
            m.to(Device.CPU);
            Map<String, Tensor> after = m.state();
            for (String k : before.keySet()) {
                assertSame(before.get(k), after.get(k), "to(CPU) on a CPU module is a no-op: " + k);
            }
            double[] w = ((Linear) m.get(0)).weight().toDoubleArray();
            m.to(DType.FLOAT64);
            Tensor w64 = ((Linear) m.get(0)).weight();
            assertEquals(DType.FLOAT64, w64.dtype());
            assertTrue(w64.requiresGrad() && w64.isLeaf());
            assertArrayEquals(w, w64.toDoubleArray());
            assertTrue(before.get("0.weight").isClosed(), "the replaced tensor is freed");
            assertEquals(DType.FLOAT32, m.state().get("2.running_mean").dtype(), "batch norm state stays float32");
            assertEquals(DType.INT64, m.state().get("2.num_batches_tracked").dtype());
        }
    }

    @Test
    void trainEvalPropagates() {
        try (TinyLm lm = new TinyLm(1, 5, 4, 2)) {
            assertTrue(lm.isTraining());
            lm.eval();
            for (Module sub : lm.namedModules().values()) {
                assertFalse(sub.isTraining());
            }
            lm.train();
            assertTrue(lm.layers.get(1).child("mlp").isTraining());
        }
    }

    @Test
    void modelOutlivesTheScopeItWasBuiltInAndCloseFreesIt() {
        Sequential m;
        try (Scope s = Scope.open()) {
            m = mlp(3);
        }
        List<Tensor> params = m.parameters();
        try (Scope s = Scope.open()) {
            Tensor y = m.forward(Tensor.of(new float[] {1, 2, 3, 4, 5, 6}, 2, 3));
            assertArrayEquals(new long[] {2, 2}, y.dims());
        }
        m.close();
        for (Tensor p : params) {
            assertTrue(p.isClosed());
        }
        m.close();
    }

    @Test
    void badRegistrationsAreClearErrors() {
        assertThrows(IllegalArgumentException.class, () -> new Linear(0, 3));
        assertThrows(IllegalArgumentException.class, () -> new GroupNorm(4, 6));
        assertThrows(IllegalArgumentException.class, () -> MultiheadAttention.builder(8, 3).build());
        assertThrows(IllegalArgumentException.class, () -> MultiheadAttention.builder(8, 4).kvHeads(3).build());
        try (Linear l = new Linear(3, 2); Tensor wrongWidth = Tensor.zeros(DType.FLOAT32, 2, 4)) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> l.forward(wrongWidth));
            assertTrue(e.getMessage().contains("in_features = 3"), e.getMessage());
            assertThrows(IllegalArgumentException.class, () -> l.parameter("gamma"));
        }
    }
}
