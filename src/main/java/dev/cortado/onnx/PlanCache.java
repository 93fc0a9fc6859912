package dev.cortado.onnx;

import dev.cortado.tensor.Device;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The JVM-wide cache of loaded model plans behind {@link InferenceSession}: what loading a model
 * file produces (the parsed graph, the checked op table entries, the weights on the device and
 * the constants folded at load) is kept once per model file and options and shared, read-only,
 * by every session of that model, so a second session neither reads, parses, converts nor folds
 * anything, and the weights exist once in memory however many sessions serve them.
 *
 * <p>A plan is keyed by the model file's real path, size, modification time and file key (the
 * inode where the file system has one), the device and the optimization level: a model file that
 * is rewritten (new size or time) gets a new plan; the sessions still on the old one keep it until
 * they close. Plans are counted: the last session of a plan to close frees it, unless one of its
 * sessions asked to retain it ({@link InferenceSession.Builder#retainPlan}); retained plans stay
 * until {@link #releaseRetained()}. A plan also remembers the warm-up runs done on it (per input
 * shape): a session asks only for the ones not done yet, since what warm-up pays for (the
 * allocator's block cache, lazily loaded kernels, the JIT) is already paid in this process.
 */
final class PlanCache {
    private PlanCache() {
    }

    /** What identifies a plan: the model file as it is on disk, the device, the optimization level. */
    record Key(Path realPath, long size, long modifiedNanos, Object fileKey, Device device,
               InferenceSession.Optimization optimization) {
        /** The key of the plan on disk ({@link PlanFile}): this one and the engine's version. */
        String diskKey() {
            return "model=" + realPath + ";size=" + size + ";mtime=" + modifiedNanos + ";file=" + fileKey + ";device="
                    + device + ";optimization=" + optimization + ";engine=" + PlanFile.engineVersion();
        }
    }

    /** A loaded model, the warm-up it has had and how many open sessions use it. */
    private static final class Plan {
        final OnnxModel model;
        final Map<String, Integer> warmedUp = new ConcurrentHashMap<>();
        int users;
        boolean retain;

        Plan(OnnxModel model) {
            this.model = model;
        }
    }

    /** Loads a model when the cache has no plan for it. */
    @FunctionalInterface
    interface Loader {
        OnnxModel load() throws IOException;
    }

    /**
     * The result of {@link #acquire}: the shared model, whether it came from the cache, and the
     * warm-up runs done on it so far (input shape -> runs), shared by its sessions.
     */
    record Lease(OnnxModel model, boolean hit, Map<String, Integer> warmedUp) {
    }

    private static final Map<Key, Plan> PLANS = new HashMap<>();

    /** The key of {@code file} as it is now (its real path and attributes), with the session's options. */
    static Key key(Path file, Device device, InferenceSession.Optimization optimization) throws IOException {
        Path real = file.toRealPath();
        BasicFileAttributes a = Files.readAttributes(real, BasicFileAttributes.class);
        return new Key(real, a.size(), a.lastModifiedTime().to(java.util.concurrent.TimeUnit.NANOSECONDS),
                a.fileKey(), device, optimization);
    }

    /**
     * The plan of {@code key}, loaded with {@code loader} when there is none (outside the lock, so
     * that loading one model does not hold up sessions of another); one more user is counted.
     */
    static Lease acquire(Key key, boolean retain, Loader loader) throws IOException {
        synchronized (PLANS) {
            Plan p = PLANS.get(key);
            if (p != null) {
                p.users++;
                p.retain |= retain;
                return new Lease(p.model, true, p.warmedUp);
            }
        }
        OnnxModel loaded = loader.load();
        Lease lease;
        synchronized (PLANS) {
            Plan p = PLANS.get(key);
            boolean raced = p != null;
            if (!raced) {
                p = new Plan(loaded);
                PLANS.put(key, p);
            }
            p.users++;
            p.retain |= retain;
            lease = new Lease(p.model, raced, p.warmedUp);
        }
        if (lease.model() != loaded) {
            loaded.close(); // another session loaded the same plan meanwhile: use that one
        }
        return lease;
    }

    /** One user of {@code key}'s plan is done; the plan is freed when it was the last and nobody retains it. */
    static void release(Key key) {
        OnnxModel free = null;
        synchronized (PLANS) {
            Plan p = PLANS.get(key);
            if (p == null) {
                return;
            }
            p.users--;
            if (p.users <= 0 && !p.retain) {
                PLANS.remove(key);
                free = p.model;
            }
        }
        if (free != null) {
            free.close();
        }
    }

    /** Frees every retained plan that no open session uses; returns how many were freed. */
    static int releaseRetained() {
        List<OnnxModel> free = new ArrayList<>();
        synchronized (PLANS) {
            PLANS.values().removeIf(p -> {
                if (p.users <= 0) {
                    free.add(p.model);
                    return true;
                }
                p.retain = false; // freed when its last session closes
                return false;
            });
        }
        free.forEach(OnnxModel::close);
        return free.size();
    }
}
