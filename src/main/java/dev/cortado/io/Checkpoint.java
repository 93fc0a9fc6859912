package dev.cortado.io;

import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.OptionalLong;

/**
 * Training checkpoints: a model's tensors, the optimizer's state and a few strings (step, seed,
 * anything else) in one safetensors file, written atomically and with a CRC32C per tensor that
 * loading verifies (see {@link Safetensors}).
 *
 * <p>In the file the model's tensors are named {@code model.<name>} and the optimizer's
 * {@code optim.<name>}; the metadata holds {@code format = cortado.checkpoint},
 * {@code format_version = 1} and every entry of {@code info} as given. The file is an ordinary
 * safetensors file, readable by other tools; a safetensors file written by another tool (no
 * {@code format} metadata) loads with all its tensors as the model and its metadata as the info.
 *
 * <pre>{@code
 * Checkpoint.save(path, model.parameters(), optimizer.state(), Map.of("step", "1200", "seed", "42"));
 * try (Checkpoint.Loaded ck = Checkpoint.load(path, Device.CPU)) {
 *     Checkpoint.copyInto(model.parameters(), ck.model(), "model");   // all-or-nothing
 *     long step = ck.step().orElse(0);
 * }
 * }</pre>
 */
public final class Checkpoint {
    /** The value of the {@code format} metadata. */
    public static final String FORMAT = "cortado.checkpoint";
    /** The format version this code writes and the newest it reads. */
    public static final int FORMAT_VERSION = 1;
    public static final String MODEL_PREFIX = "model.";
    public static final String OPTIMIZER_PREFIX = "optim.";
    static final String FORMAT_KEY = "format";
    static final String VERSION_KEY = "format_version";

    private Checkpoint() {
    }

    /**
     * Saves {@code model} and {@code optimizer} (either may be empty) with {@code info} to
     * {@code path}, atomically: after a failure the previous file at {@code path} is unchanged.
     * The keys {@code format} and {@code format_version} are reserved.
     */
    public static void save(Path path, Map<String, Tensor> model, Map<String, Tensor> optimizer,
                            Map<String, String> info) throws IOException {
        Objects.requireNonNull(path, "path");
        Map<String, Tensor> all = new LinkedHashMap<>();
        put(all, MODEL_PREFIX, model);
        put(all, OPTIMIZER_PREFIX, optimizer);
        Map<String, String> meta = new LinkedHashMap<>();
        meta.put(FORMAT_KEY, FORMAT);
        meta.put(VERSION_KEY, Integer.toString(FORMAT_VERSION));
        if (info != null) {
            for (Map.Entry<String, String> e : info.entrySet()) {
                if (FORMAT_KEY.equals(e.getKey()) || VERSION_KEY.equals(e.getKey())) {
                    throw new IllegalArgumentException("Checkpoint.save: info key \"" + e.getKey() + "\" is reserved");
                }
                meta.put(e.getKey(), e.getValue());
            }
        }
        Safetensors.write(path, all, meta, true);
    }

    private static void put(Map<String, Tensor> all, String prefix, Map<String, Tensor> part) {
        if (part == null) {
            return;
        }
        for (Map.Entry<String, Tensor> e : part.entrySet()) {
            if (e.getKey() == null) {
                throw new IllegalArgumentException("Checkpoint.save: a tensor name is null");
            }
            all.put(prefix + e.getKey(), e.getValue());
        }
    }

    /**
     * Loads the checkpoint at {@code path} onto {@code device}. Throws
     * {@link CheckpointFormatException} for a corrupt file, a checkpoint of a newer format version,
     * or a Cortado checkpoint with a tensor outside the model and optimizer groups.
     */
    public static Loaded load(Path path, Device device) throws IOException {
        Safetensors.Contents contents = Safetensors.read(path, device);
        try {
            Map<String, String> meta = contents.metadata();
            String format = meta.get(FORMAT_KEY);
            int version = 0;
            boolean ours = FORMAT.equals(format);
            if (ours) {
                String v = meta.get(VERSION_KEY);
                try {
                    version = Integer.parseInt(Objects.requireNonNull(v, "missing"));
                } catch (NumberFormatException | NullPointerException e) {
                    throw new CheckpointFormatException(path + ": a Cortado checkpoint without a valid "
                            + VERSION_KEY + " (found " + (v == null ? "none" : "\"" + v + "\"") + ")");
                }
                if (version < 1 || version > FORMAT_VERSION) {
                    throw new CheckpointFormatException(path + ": checkpoint format version " + version
                            + " is not supported (this Cortado reads versions 1 to " + FORMAT_VERSION
                            + "; was it written by a newer Cortado?)");
                }
            }
            Map<String, Tensor> model = new LinkedHashMap<>();
            Map<String, Tensor> optimizer = new LinkedHashMap<>();
            for (Map.Entry<String, Tensor> e : contents.tensors().entrySet()) {
                String name = e.getKey();
                if (!ours) {
                    model.put(name, e.getValue());
                } else if (name.startsWith(MODEL_PREFIX)) {
                    model.put(name.substring(MODEL_PREFIX.length()), e.getValue());
                } else if (name.startsWith(OPTIMIZER_PREFIX)) {
                    optimizer.put(name.substring(OPTIMIZER_PREFIX.length()), e.getValue());
                } else {
                    throw new CheckpointFormatException(path + ": tensor \"" + name + "\" belongs to neither the model ("
                            + MODEL_PREFIX + "*) nor the optimizer (" + OPTIMIZER_PREFIX + "*)");
                }
            }
            Map<String, String> info = new LinkedHashMap<>(meta);
            if (ours) {
                info.remove(FORMAT_KEY);
                info.remove(VERSION_KEY);
            }
            return new Loaded(contents, model, optimizer, info, version);
        } catch (IOException | RuntimeException | Error e) {
            Safetensors.closeAll(contents.tensors().values(), e);
            throw e;
        }
    }

    /**
     * A loaded checkpoint. It owns the tensors of {@link #model()} and {@link #optimizer()};
     * {@link #close()} frees them.
     */
    public static final class Loaded implements AutoCloseable {
        private final Safetensors.Contents contents;
        private final Map<String, Tensor> model;
        private final Map<String, Tensor> optimizer;
        private final Map<String, String> info;
        private final int formatVersion;

        Loaded(Safetensors.Contents contents, Map<String, Tensor> model, Map<String, Tensor> optimizer,
               Map<String, String> info, int formatVersion) {
            this.contents = contents;
            this.model = Collections.unmodifiableMap(model);
            this.optimizer = Collections.unmodifiableMap(optimizer);
            this.info = Collections.unmodifiableMap(info);
            this.formatVersion = formatVersion;
        }

        /** The model's tensors, by name without the {@code model.} prefix, in file order. */
        public Map<String, Tensor> model() {
            return model;
        }

        /** The optimizer's tensors, by name without the {@code optim.} prefix (empty if none). */
        public Map<String, Tensor> optimizer() {
            return optimizer;
        }

        /** The info strings given to {@link #save} (the whole metadata for a foreign file). */
        public Map<String, String> info() {
            return info;
        }

        /** The checkpoint format version; 0 for a safetensors file not written as a checkpoint. */
        public int formatVersion() {
            return formatVersion;
        }

        /** {@code info["step"]} as a number, if present. */
        public OptionalLong step() {
            return longInfo("step");
        }

        /** {@code info["seed"]} as a number, if present. */
        public OptionalLong seed() {
            return longInfo("seed");
        }

        /** {@code info[key]} as a number; empty if absent; throws if present but not an integer. */
        public OptionalLong longInfo(String key) {
            String v = info.get(key);
            if (v == null) {
                return OptionalLong.empty();
            }
            try {
                return OptionalLong.of(Long.parseLong(v.trim()));
            } catch (NumberFormatException e) {
                throw new IllegalStateException("checkpoint info \"" + key + "\" is \"" + v + "\", not an integer");
            }
        }

        @Override
        public void close() {
            contents.close();
        }
    }

    /**
     * Copies {@code loaded} into the existing tensors of {@code target} in place, all or nothing:
     * first every key and every shape and dtype is compared, and if anything differs an
     * {@link IllegalArgumentException} lists the keys missing from the file, the keys the file has
     * that {@code target} lacks, and each shape or dtype mismatch, and no target tensor is
     * modified. {@code what} names the target in the message ("model", "optimizer").
     */
    public static void copyInto(Map<String, Tensor> target, Map<String, Tensor> loaded, String what) {
        Objects.requireNonNull(target, "target");
        Objects.requireNonNull(loaded, "loaded");
        String w = what == null ? "target" : what;
        List<String> missing = new ArrayList<>();
        List<String> unexpected = new ArrayList<>();
        List<String> mismatched = new ArrayList<>();
        for (Map.Entry<String, Tensor> e : target.entrySet()) {
            Tensor dst = e.getValue();
            Tensor src = loaded.get(e.getKey());
            if (src == null) {
                missing.add(e.getKey());
                continue;
            }
            if (dst == null) {
                throw new IllegalArgumentException("copyInto: " + w + " tensor \"" + e.getKey() + "\" is null");
            }
            dst.ensureOpen("copyInto(\"" + e.getKey() + "\")");
            src.ensureOpen("copyInto(\"" + e.getKey() + "\")");
            if (!dst.shape().equals(src.shape())) {
                mismatched.add(e.getKey() + " has shape " + src.shape() + " in the file, " + dst.shape()
                        + " in the " + w);
            } else if (dst.dtype() != src.dtype()) {
                mismatched.add(e.getKey() + " has dtype " + src.dtype() + " in the file, " + dst.dtype()
                        + " in the " + w);
            } else if (dst.dtype().isPacked()) {
                mismatched.add(e.getKey() + " is " + dst.dtype() + ", which cannot be written in place");
            }
        }
        for (String k : loaded.keySet()) {
            if (!target.containsKey(k)) {
                unexpected.add(k);
            }
        }
        if (!missing.isEmpty() || !unexpected.isEmpty() || !mismatched.isEmpty()) {
            StringBuilder b = new StringBuilder("cannot load the " + w + ": checkpoint of another architecture");
            if (!mismatched.isEmpty()) {
                b.append(": ").append(Safetensors.abbreviate(mismatched, 10, "; "));
            }
            if (!missing.isEmpty()) {
                b.append("; missing in the file: ").append(Safetensors.abbreviate(missing, 20));
            }
            if (!unexpected.isEmpty()) {
                b.append("; in the file but not in the ").append(w).append(": ")
                        .append(Safetensors.abbreviate(unexpected, 20));
            }
            b.append(" (nothing was copied)");
            throw new IllegalArgumentException(b.toString());
        }
        for (Map.Entry<String, Tensor> e : target.entrySet()) {
            e.getValue().copyFrom(loaded.get(e.getKey()));
        }
    }
}
