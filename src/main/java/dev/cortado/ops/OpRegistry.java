package dev.cortado.ops;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/** Every declared op, by name. Declarations register themselves when their family class loads. */
public final class OpRegistry {
    private static final Map<String, Op<?>> OPS = new TreeMap<>();
    private static final List<Class<?>> FAMILIES = List.of(Elementwise.class, Reductions.class, Normalization.class,
            Indexing.class, LinearAlgebra.class, Generator.class, Pooling.class, BatchNorm.class, Convolution.class, Attention.class, KvCache.class, CrossEntropy.class, Sparse.class,
            MixtureOfExperts.class, LinearAttention.class);

    /** Families declared in packages above ops (loaded by name: ops may not depend on them). */
    private static final List<String> UPPER_FAMILIES = List.of("dev.cortado.quant.Quantization",
            "dev.cortado.quant.Int8Gemm", "dev.cortado.quant.Int8Conv", "dev.cortado.quant.WeightOnly",
            "dev.cortado.quant.Binary", "dev.cortado.graph.FusedElementwise");

    private OpRegistry() {
    }

    static synchronized void add(Op<?> op) {
        if (OPS.putIfAbsent(op.name(), op) != null) {
            throw new IllegalStateException("op " + op.name() + " is declared twice");
        }
    }

    private static void loadFamilies() {
        for (Class<?> family : FAMILIES) {
            try {
                Class.forName(family.getName(), true, family.getClassLoader());
            } catch (ClassNotFoundException e) {
                throw new IllegalStateException(e);
            }
        }
        for (String family : UPPER_FAMILIES) {
            try {
                Class.forName(family, true, OpRegistry.class.getClassLoader());
            } catch (ClassNotFoundException e) {
                throw new IllegalStateException("op family " + family + " is missing", e);
            }
        }
    }

    /** The op named {@code name}; throws listing what exists when there is none. */
    public static Op<?> get(String name) {
        loadFamilies();
        synchronized (OpRegistry.class) {
            Op<?> op = OPS.get(name);
            if (op == null) {
                throw new IllegalArgumentException("no op named '" + name + "'; declared ops: " + OPS.keySet());
            }
            return op;
        }
    }

    /** All declared ops, sorted by name. */
    public static List<Op<?>> all() {
        loadFamilies();
        synchronized (OpRegistry.class) {
            return Collections.unmodifiableList(new ArrayList<>(OPS.values()));
        }
    }
}
