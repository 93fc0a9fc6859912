package dev.cortado.djl;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Model;
import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.nn.norm.Dropout;
import ai.djl.training.GradientCollector;
import ai.djl.training.optimizer.Optimizer;
import ai.djl.training.tracker.Tracker;
import dev.cortado.Cortado;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;
import java.util.Random;
import java.util.function.Consumer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/** The engine's registration, memory ownership, gradients, optimizer updates and unsupported methods. */
@ExtendWith(NoLeaks.class)
class EngineTest {
    @Test
    void isRegisteredThroughTheEngineProvider() {
        Engine e = Engine.getEngine("Cortado");
        assertTrue(e instanceof CortadoEngine);
        assertTrue(Engine.getAllEngines().contains("Cortado"));
        assertEquals("Cortado", e.getEngineName());
        try (NDManager m = e.newBaseManager()) {
            assertSame(e, m.getEngine());
            assertTrue(m.zeros(new Shape(2)) instanceof CortadoNDArray);
        }
        try (Model model = Model.newInstance("m", ai.djl.Device.cpu(), "Cortado")) {
            assertTrue(model instanceof CortadoModel);
        }
    }

    private static long liveBytes() {
        return Cortado.memoryStats(Device.CPU).allocatedBytes();
    }

    /** Closing a manager closes every array in it and in its sub-managers: their memory is freed then. */
    @Test
    void closingAManagerFreesItsTensors() {
        long before = liveBytes();
        NDManager base = Engines.cortado().newBaseManager();
        NDManager sub = base.newSubManager();
        NDArray a = base.randomNormal(new Shape(256, 1024));      // 1 MiB
        NDArray b = sub.ones(new Shape(512, 512));                // 1 MiB
        NDArray c = a.matMul(a.transpose()).add(1);               // results attached to base
        NDArray v = b.reshape(new Shape(-1));                     // a view over b's memory
        assertTrue(liveBytes() - before >= 2L * 1024 * 1024, "the arrays hold their memory");
        sub.close();
        assertTrue(b.isReleased() && v.isReleased());
        assertFalse(a.isReleased() || c.isReleased());
        base.close();
        assertTrue(a.isReleased() && c.isReleased());
        assertEquals(before, liveBytes(), "every tensor of the managers is freed when they close");
        assertThrows(IllegalStateException.class, () -> base.zeros(new Shape(8)), "a closed manager makes no arrays");
        assertEquals(before, liveBytes(), "and keeps no memory for them");
    }

    /**
     * A training step's arrays, gradients included, are freed when its managers close. DJL's
     * optimizers detach their state (here SGD's momentum, 64 x 32 float32): it stays with the system
     * manager for the life of the process, as with DJL's other engines.
     */
    @Test
    void aTrainingStepLeavesNothingBehind() {
        long before = liveBytes();
        try (NDManager m = Engines.cortado().newBaseManager()) {
            NDArray w = m.randomUniform(-1, 1, new Shape(64, 32));
            w.setRequiresGradient(true);
            Optimizer sgd = Optimizer.sgd().setLearningRateTracker(Tracker.fixed(0.1f)).optMomentum(0.9f).build();
            for (int step = 0; step < 3; step++) {
                try (NDManager batch = m.newSubManager()) {
                    NDArray x = batch.randomNormal(new Shape(16, 64));
                    try (GradientCollector gc = Engines.cortado().newGradientCollector()) {
                        gc.backward(x.matMul(w).tanh().square().mean());
                    }
                    sgd.update("w", w, w.getGradient().duplicate());
                }
            }
        }
        assertEquals(before + 64 * 32 * 4, liveBytes(), "weights, gradients and step arrays are all freed; "
                + "the detached momentum state remains");
    }

    @Test
    void gradientsAccumulateUntilAnUpdateClearsThem() {
        try (NDManager m = Engines.cortado().newBaseManager()) {
            NDArray x = m.create(new float[] {1, 2, 3});
            x.setRequiresGradient(true);
            assertArrayEquals(new float[] {0, 0, 0}, x.getGradient().toFloatArray());
            for (int i = 0; i < 2; i++) {
                try (GradientCollector gc = Engines.cortado().newGradientCollector()) {
                    gc.backward(x.mul(x).sum());
                }
            }
            assertArrayEquals(new float[] {4, 8, 12}, x.getGradient().toFloatArray(), "d(x^2)/dx = 2x, twice");
            Engines.cortado().newGradientCollector().close();
            try (GradientCollector gc = Engines.cortado().newGradientCollector()) {
                gc.zeroGradients();
                gc.backward(x.sum());
            }
            assertArrayEquals(new float[] {1, 1, 1}, x.getGradient().toFloatArray());
            // outside a collector nothing is recorded
            NDArray y = x.mul(2);
            assertThrows(IllegalStateException.class, () -> {
                try (GradientCollector gc = Engines.cortado().newGradientCollector()) {
                    gc.backward(y);
                }
            });
        }
    }

    /** DJL's SGD (with and without momentum) and Adam/AdamW updates, several steps, against PyTorch's. */
    @Test
    void optimizerUpdatesMatchPyTorch() {
        Engine torch = Engines.pytorch();
        Optimizer[] optimizers = {
            Optimizer.sgd().setLearningRateTracker(Tracker.fixed(0.1f)).optWeightDecays(0.01f).build(),
            Optimizer.sgd().setLearningRateTracker(Tracker.fixed(0.05f)).optMomentum(0.9f).optClipGrad(0.3f).build(),
            Optimizer.adam().optLearningRateTracker(Tracker.fixed(0.01f)).optWeightDecays(0.001f).build(),
            Optimizer.adamW().optLearningRateTracker(Tracker.fixed(0.01f)).optWeightDecays(0.05f).build(),
            Optimizer.adam().optLearningRateTracker(Tracker.fixed(0.02f)).setRescaleGrad(0.5f).build(),
        };
        String[] names = {"sgd", "sgd-momentum-clip", "adam", "adamw", "adam-rescale"};
        for (int k = 0; k < optimizers.length; k++) {
            int kk = k;
            float[] ours = steps(Engines.cortado(), () -> optimizers[kk]);
            Optimizer fresh = rebuild(k);
            float[] theirs = steps(torch, () -> fresh);
            for (int i = 0; i < ours.length; i++) {
                assertEquals(theirs[i], ours[i], 1e-5 + 1e-5 * Math.abs(theirs[i]), names[k] + ": weight " + i);
            }
        }
    }

    private static Optimizer rebuild(int k) {
        switch (k) {
            case 0: return Optimizer.sgd().setLearningRateTracker(Tracker.fixed(0.1f)).optWeightDecays(0.01f).build();
            case 1: return Optimizer.sgd().setLearningRateTracker(Tracker.fixed(0.05f)).optMomentum(0.9f).optClipGrad(0.3f).build();
            case 2: return Optimizer.adam().optLearningRateTracker(Tracker.fixed(0.01f)).optWeightDecays(0.001f).build();
            case 3: return Optimizer.adamW().optLearningRateTracker(Tracker.fixed(0.01f)).optWeightDecays(0.05f).build();
            default: return Optimizer.adam().optLearningRateTracker(Tracker.fixed(0.02f)).setRescaleGrad(0.5f).build();
        }
    }

    /** Four updates of w [5, 3] on loss = sum((x w)^3) with fixed random x; the final weights. */
    private static float[] steps(Engine engine, java.util.function.Supplier<Optimizer> optimizer) {
        Random r = new Random(5);
        float[] w0 = new float[15];
        float[] x0 = new float[20];
        for (int i = 0; i < w0.length; i++) {
            w0[i] = 2 * r.nextFloat() - 1;
        }
        for (int i = 0; i < x0.length; i++) {
            x0[i] = 2 * r.nextFloat() - 1;
        }
        Optimizer opt = optimizer.get();
        try (NDManager m = engine.newBaseManager()) {
            NDArray w = m.create(w0, new Shape(5, 3));
            w.setRequiresGradient(true);
            NDArray x = m.create(x0, new Shape(4, 5));
            for (int step = 0; step < 4; step++) {
                try (GradientCollector gc = engine.newGradientCollector()) {
                    NDArray y = x.matMul(w);
                    gc.backward(y.mul(y).mul(y).sum());
                }
                try (NDArray g = w.getGradient().duplicate()) {
                    opt.update("w", w, g);
                }
            }
            return w.toFloatArray();
        }
    }

    @Test
    void dropoutZeroesAboutRateAndScalesTheRest() {
        Engines.cortado().setRandomSeed(3);
        try (NDManager m = Engines.cortado().newBaseManager()) {
            NDArray x = m.ones(new Shape(200, 100));
            float[] y = Dropout.dropout(x, 0.3f, true).singletonOrThrow().toFloatArray();
            int zeros = 0;
            for (float v : y) {
                if (v == 0) {
                    zeros++;
                } else {
                    assertEquals(1 / 0.7f, v, 1e-6f);
                }
            }
            assertEquals(0.3, zeros / (double) y.length, 0.02, "fraction dropped");
            assertArrayEquals(x.toFloatArray(), Dropout.dropout(x, 0.3f, false).singletonOrThrow().toFloatArray());
        }
    }

    @Test
    void randomArraysFollowTheirDistributions() {
        try (NDManager m = Engines.cortado().newBaseManager()) {
            float[] u = m.randomUniform(2, 5, new Shape(20000)).toFloatArray();
            double mean = 0;
            for (float v : u) {
                assertTrue(v >= 2 && v < 5);
                mean += v / u.length;
            }
            assertEquals(3.5, mean, 0.05);
            NDArray n = m.randomNormal(1, 2, new Shape(20000), DataType.FLOAT64);
            assertEquals(DataType.FLOAT64, n.getDataType());
            assertEquals(1, n.mean().getDouble(), 0.06);
            assertEquals(2, n.sub(1).square().mean().sqrt().getDouble(), 0.06);
            float[] t = m.truncatedNormal(0, 1, new Shape(2000), DataType.FLOAT32).toFloatArray();
            for (float v : t) {
                assertTrue(Math.abs(v) <= 2);
            }
        }
    }

    /** Arrays of another engine are copied in; an array's tensor is reachable for Cortado's own ops. */
    @Test
    void interoperates() {
        try (NDManager m = Engines.cortado().newBaseManager()) {
            CortadoNDArray a = (CortadoNDArray) m.create(new float[] {1, 2, 3});
            Tensor t = a.tensor();
            assertArrayEquals(new float[] {1, 2, 3}, t.toFloatArray());
            assertArrayEquals(new float[] {2, 4, 6}, a.add(a).toFloatArray());
            NDArray moved = a.toDevice(ai.djl.Device.cpu(), true);
            assertFalse(moved == a);
            assertArrayEquals(new float[] {1, 2, 3}, moved.toFloatArray());
        }
        Engine torch = Engines.pytorchOrNull();
        if (torch != null) {
            try (NDManager pm = torch.newBaseManager(); NDManager m = Engines.cortado().newBaseManager()) {
                NDArray p = pm.create(new float[] {1, 2, 3});
                NDArray c = m.create(new float[] {10, 20, 30});
                assertArrayEquals(new float[] {11, 22, 33}, c.add(p).toFloatArray());
                assertTrue(m.from(p) instanceof CortadoNDArray);
            }
        }
    }

    /** Each unsupported DJL method throws UnsupportedOperationException naming itself. */
    @Test
    void unsupportedMethodsNameThemselves() {
        try (NDManager m = Engines.cortado().newBaseManager()) {
            NDArray a = m.create(new float[] {1, 2, 3, 4}, new Shape(2, 2));
            check("NDArray.sort", x -> x.sort(), a);
            check("NDArray.floor", NDArray::floor, a);
            check("NDArray.cumSum", NDArray::cumSum, a);
            check("NDArray.topK", x -> x.topK(1, 0), a);
            check("NDArray.booleanMask", x -> x.booleanMask(x.gt(1)), a);
            check("NDArray.fft", x -> x.fft(2), a);
            check("NDArray.inverse", NDArray::inverse, a);
            check("NDArray.sign", NDArray::sign, a);
            check("NDArrayEx.lstm", x -> x.getNDArrayInternal().lstm(x, new NDList(), new NDList(), true, 1, 0, true,
                    false, true), a);
            check("NDArrayEx.deconvolution", x -> x.getNDArrayInternal().deconvolution(x, x, null, new Shape(1),
                    new Shape(0), new Shape(0), new Shape(1), 1), a);
            check("NDManager.randomInteger", x -> m.randomInteger(0, 3, new Shape(2), DataType.INT64), a);
            UnsupportedOperationException e = assertThrows(UnsupportedOperationException.class,
                    () -> m.zeros(new Shape(2), DataType.UINT32));
            assertTrue(e.getMessage().contains("NDManager.zeros"), e.getMessage());
        }
    }

    private static void check(String method, Consumer<NDArray> call, NDArray a) {
        UnsupportedOperationException e = assertThrows(UnsupportedOperationException.class, () -> call.accept(a));
        assertTrue(e.getMessage().startsWith(method + " "), () -> "message '" + e.getMessage() + "' should name " + method);
    }
}
