package dev.cortado.io;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class CheckpointTest {
    @TempDir
    Path dir;

    private final Random rng = new Random(5);

    @AfterEach
    void clearHook() {
        Safetensors.writeHook = null;
    }

    Tensor randn(long... dims) {
        int n = 1;
        for (long d : dims) {
            n *= (int) d;
        }
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) rng.nextGaussian();
        }
        return Tensor.of(v, dims);
    }

    /** A small "model": conv weight, bias, and a linear layer. */
    Map<String, Tensor> model(long channels) {
        Map<String, Tensor> m = new LinkedHashMap<>();
        m.put("layer1.weight", randn(channels, 3, 3, 3));
        m.put("layer1.bias", randn(channels));
        m.put("fc.weight", randn(10, 7));
        return m;
    }

    @Test
    void savesAndLoadsModelOptimizerAndInfo() throws IOException {
        try (Scope s = Scope.open()) {
            Map<String, Tensor> model = model(4);
            Map<String, Tensor> optim = new LinkedHashMap<>();
            optim.put("layer1.weight.exp_avg", randn(4, 3, 3, 3));
            optim.put("step", Tensor.of(new long[] {1200}));
            Path p = dir.resolve("ck.safetensors");
            Checkpoint.save(p, model, optim, Map.of("step", "1200", "seed", "42", "lr", "3e-4"));
            try (Checkpoint.Loaded ck = Checkpoint.load(p, Device.CPU)) {
                assertEquals(1, ck.formatVersion());
                assertEquals(model.keySet(), ck.model().keySet());
                assertEquals(optim.keySet(), ck.optimizer().keySet());
                assertEquals(Map.of("step", "1200", "seed", "42", "lr", "3e-4"), ck.info());
                assertEquals(1200, ck.step().getAsLong());
                assertEquals(42, ck.seed().getAsLong());
                assertThrows(IllegalStateException.class, () -> ck.longInfo("lr"));
                assertFalse(ck.longInfo("epoch").isPresent());
                assertEquals(1200, ck.optimizer().get("step").toLongArray()[0]);

                Map<String, Tensor> fresh = model(4);
                fresh.values().forEach(t -> t.requiresGrad(true)); // parameters load in place
                Checkpoint.copyInto(fresh, ck.model(), "model");
                for (String k : model.keySet()) {
                    assertArrayEquals(model.get(k).toFloatArray(), fresh.get(k).toFloatArray(), k);
                }
            }
            // the file is plain safetensors with prefixed names
            try (Safetensors.Contents c = Safetensors.read(p, Device.CPU)) {
                assertTrue(c.tensors().containsKey("model.layer1.weight"));
                assertTrue(c.tensors().containsKey("optim.step"));
                assertEquals(Checkpoint.FORMAT, c.metadata().get("format"));
                assertEquals("1", c.metadata().get("format_version"));
            }
        }
    }

    @Test
    void copyIntoRefusesAnotherArchitectureBeforeTouchingAnything() throws IOException {
        try (Scope s = Scope.open()) {
            Path p = dir.resolve("wide.safetensors");
            Map<String, Tensor> wide = model(64);
            wide.put("extra.weight", randn(2));
            Checkpoint.save(p, wide, Map.of(), Map.of());
            Map<String, Tensor> narrow = new LinkedHashMap<>();
            narrow.put("fc.weight", randn(10, 7)); // matches, and comes first: must still not be written
            narrow.put("layer1.weight", randn(32, 3, 3, 3));
            narrow.put("layer1.bias", Tensor.zeros(DType.FLOAT64, 64));
            narrow.put("head.weight", randn(3));
            Map<String, float[]> before = new LinkedHashMap<>();
            narrow.forEach((k, v) -> before.put(k, v.toFloatArray()));
            try (Checkpoint.Loaded ck = Checkpoint.load(p, Device.CPU)) {
                IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                        () -> Checkpoint.copyInto(narrow, ck.model(), "model"));
                String m = e.getMessage();
                assertTrue(m.contains("checkpoint of another architecture"), m);
                assertTrue(m.contains("layer1.weight has shape [64, 3, 3, 3] in the file, [32, 3, 3, 3] in the model"), m);
                assertTrue(m.contains("layer1.bias has dtype float32 in the file, float64 in the model"), m);
                assertTrue(m.contains("missing in the file: head.weight"), m);
                assertTrue(m.contains("in the file but not in the model: extra.weight"), m);
            }
            narrow.forEach((k, v) -> assertArrayEquals(before.get(k), v.toFloatArray(), k + " was modified"));
        }
    }

    @Test
    void loadsForeignSafetensorsAsAModel() throws IOException {
        Path p = dir.resolve("hf.safetensors");
        Files.write(p, SafetensorsTest.HAND_BUILT);
        try (Checkpoint.Loaded ck = Checkpoint.load(p, Device.CPU)) {
            assertEquals(0, ck.formatVersion());
            assertEquals(List.of("weight", "ids"), List.copyOf(ck.model().keySet()));
            assertTrue(ck.optimizer().isEmpty());
            assertEquals(Map.of("format", "pt"), ck.info());
        }
    }

    @Test
    void refusesNewerVersionsStrayTensorsAndReservedKeys() throws IOException {
        try (Tensor t = randn(2)) {
            Path newer = dir.resolve("newer.safetensors");
            Safetensors.write(newer, Map.of("model.a", t), Map.of("format", Checkpoint.FORMAT, "format_version", "2"));
            CheckpointFormatException e = assertThrows(CheckpointFormatException.class,
                    () -> Checkpoint.load(newer, Device.CPU));
            assertTrue(e.getMessage().contains("version 2") && e.getMessage().contains(newer.toString()), e.getMessage());

            Path stray = dir.resolve("stray.safetensors");
            Safetensors.write(stray, Map.of("model.a", t, "other", t),
                    Map.of("format", Checkpoint.FORMAT, "format_version", "1"));
            e = assertThrows(CheckpointFormatException.class, () -> Checkpoint.load(stray, Device.CPU));
            assertTrue(e.getMessage().contains("\"other\""), e.getMessage());

            assertThrows(IllegalArgumentException.class,
                    () -> Checkpoint.save(dir.resolve("r.safetensors"), Map.of("a", t), null, Map.of("format", "x")));
        }
    }

    @Test
    void aCrashWhileSavingKeepsThePreviousCheckpoint() throws IOException {
        Path p = dir.resolve("ck.safetensors");
        try (Scope s = Scope.open()) {
            Map<String, Tensor> model = model(8);
            Checkpoint.save(p, model, Map.of("m", randn(8)), Map.of("step", "100"));
            byte[] old = Files.readAllBytes(p);
            int[] calls = {0};
            Safetensors.writeHook = (name, pos) -> {
                if (++calls[0] == 3) {
                    throw new IOException("disk full (simulated) at byte " + pos);
                }
            };
            Map<String, Tensor> next = model(8);
            IOException e = assertThrows(IOException.class,
                    () -> Checkpoint.save(p, next, Map.of("m", randn(8)), Map.of("step", "200")));
            assertTrue(e.getMessage().contains("simulated"));
            Safetensors.writeHook = null;
            assertArrayEquals(old, Files.readAllBytes(p));
            try (Stream<Path> files = Files.list(dir)) {
                assertEquals(List.of(p), files.toList(), "only the checkpoint remains");
            }
            try (Checkpoint.Loaded ck = Checkpoint.load(p, Device.CPU)) {
                assertEquals(100, ck.step().getAsLong());
                Map<String, Tensor> target = model(8);
                Checkpoint.copyInto(target, ck.model(), "model");
                assertArrayEquals(model.get("fc.weight").toFloatArray(), target.get("fc.weight").toFloatArray());
            }
        }
    }
}
