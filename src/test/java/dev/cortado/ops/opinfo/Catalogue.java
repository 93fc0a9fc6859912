package dev.cortado.ops.opinfo;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/** Every OpInfo entry, by op name: one list per family file. */
public final class Catalogue {
    private Catalogue() {
    }

    private static final Map<String, OpInfo> ENTRIES = new TreeMap<>();

    static {
        List<List<OpInfo>> families = List.of(ElementwiseSamples.ENTRIES, ReductionSamples.ENTRIES,
                NormalizationSamples.ENTRIES, IndexingSamples.ENTRIES, LinearAlgebraSamples.ENTRIES, RandomSamples.ENTRIES,
                PoolingSamples.ENTRIES, BatchNormSamples.ENTRIES, ConvolutionSamples.ENTRIES, AttentionSamples.ENTRIES,
                KvCacheSamples.ENTRIES, LossSamples.ENTRIES, SparseSamples.ENTRIES, QuantizationSamples.ENTRIES,
                GraphSamples.ENTRIES, WeightOnlySamples.ENTRIES, BinarySamples.ENTRIES, QuantConvSamples.ENTRIES,
                MoeSamples.ENTRIES, LinearAttentionSamples.ENTRIES);
        for (List<OpInfo> family : families) {
            for (OpInfo e : family) {
                if (ENTRIES.putIfAbsent(e.name(), e) != null) {
                    throw new IllegalStateException("two OpInfo entries for " + e.name());
                }
            }
        }
    }

    /** The entry for {@code op}, or null. */
    public static OpInfo get(String op) {
        return ENTRIES.get(op);
    }

    /** All entries, sorted by op name. */
    public static List<OpInfo> all() {
        return new ArrayList<>(ENTRIES.values());
    }
}
