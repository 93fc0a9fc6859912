package dev.cortado.distributed;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.cortado.distributed.ScalingModel.Compression;
import dev.cortado.distributed.ScalingModel.Fabric;
import dev.cortado.distributed.ScalingModel.Prediction;
import dev.cortado.distributed.ScalingModel.Workload;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import org.junit.jupiter.api.Test;

/**
 * The scaling model's arithmetic against hand-computed values, and docs/distributed.md's table
 * against what the model computes (so the doc cannot drift from the code).
 */
class ScalingModelTest {
    private static final Fabric H100 = Fabric.h100NvlinkInfiniband();

    /** The character model of train-charlm (0.8 M parameters, 16 x 128 characters per GPU); compute time assumed. */
    static final Workload CHAR_MODEL = new Workload("character model", 800_000, 4, 1.5e-3, 25L << 20, 16);
    /** A ResNet-50-sized CNN (25.6 M parameters, batch 64 per GPU); compute time assumed. */
    static final Workload RESNET50 = new Workload("ResNet-50-sized CNN", 25_557_032, 4, 20e-3, 25L << 20, 64);

    @Test
    void ringAndTreeAllReduceFollowTheAlphaBetaFormulas() {
        double s = 100e6;
        // 8 GPUs, one node: ring 8.4 + 14 x 3.4 us, algorithm bandwidth 370 GB/s x 8 / 14
        double ring8 = 8.4e-6 + 14 * 3.4e-6 + s / (370e9 * 8 / 14);
        double tree8 = 8.4e-6 + 2 * 7 * 3.4e-6 + s / 185e9;
        assertEquals(ring8, ScalingModel.ringAllReduceSeconds(H100, 8, s), 1e-12);
        assertEquals(tree8, ScalingModel.treeAllReduceSeconds(H100, 8, s), 1e-12);
        assertEquals(Math.min(ring8, tree8), ScalingModel.allReduceSeconds(H100, 8, s), 1e-12);
        assertEquals(529.0e-6, ScalingModel.allReduceSeconds(H100, 8, s), 0.1e-6);
        // 512 GPUs on 64 nodes: ring 8.4 + (1022 - 126) x 3.4 + 126 x 9.6 us = 4264.4 us of latency;
        // tree 8.4 + 2 (7 x 3.4 + 6 x 9.6) = 171.2 us; bus bandwidth min(370, 8 x 47) GB/s
        assertEquals(4264.4e-6 + s / (370e9 * 512 / 1022), ScalingModel.ringAllReduceSeconds(H100, 512, s), 1e-9);
        assertEquals(171.2e-6 + s / 185e9, ScalingModel.treeAllReduceSeconds(H100, 512, s), 1e-9);
        assertTrue(ScalingModel.allReduceSeconds(H100, 512, s) < ScalingModel.ringAllReduceSeconds(H100, 512, s),
                "at 512 GPUs the tree's latency wins");
        assertEquals(0, ScalingModel.allReduceSeconds(H100, 1, s));
        // all-gather: p - 1 steps, (p - 1) m / busBw
        assertEquals(8.4e-6 + 56 * 3.4e-6 + 7 * 9.6e-6 + 63 * 1000 / 370e9, ScalingModel.allGatherSeconds(H100, 64, 1000), 1e-12);
    }

    @Test
    void overlapHidesWhatTheBackwardCovers() {
        // no latency, 1 byte/s per... simple numbers: two buckets of 10 elements x 4 bytes, each all-reduce
        // on 2 GPUs in one node = 2(p-1)/p x 40 B / busBw = 40 / busBw; busBw 80 B/s -> 0.5 s
        Fabric slow = new Fabric("toy", 8, 80, 80, 0, 0, 0, 1e12);
        Workload w = new Workload("toy", 20, 4, 3.0, 40, 1);
        assertEquals(2, w.buckets().length);
        Prediction p = ScalingModel.predict(slow, w, 2, null);
        // forward 1 s, backward 2 s: bucket 0 ready at 2 s, done at 2.5 s; bucket 1 ready at 3 s, done at 3.5 s
        assertEquals(3.5, p.stepSeconds(), 1e-12);
        assertEquals(1.0, p.communicationSeconds(), 1e-12);
        assertEquals(0.5, p.exposedSeconds(), 1e-12);
        assertEquals(3.0 / 3.5, p.efficiency(), 1e-12);
        assertEquals(2 / 3.5, p.samplesPerSecond(), 1e-12);
        // a slower link: each all-reduce 2 s; bucket 0: 2..4, bucket 1: 4..6
        Prediction q = ScalingModel.predict(new Fabric("toy", 8, 20, 20, 0, 0, 0, 1e12), w, 2, null);
        assertEquals(6.0, q.stepSeconds(), 1e-12);
        assertEquals(1.0, ScalingModel.predict(slow, w, 1, null).efficiency());
    }

    @Test
    void compressionAddsSelectionWorkAndAllGathersThePairs() {
        Fabric f = new Fabric("toy", 8, 80, 80, 0, 0, 0, 400);
        Workload w = new Workload("toy", 1000, 4, 3.0, 1L << 20, 1);
        // k = 10 pairs of 8 bytes; all-gather on 4 GPUs: 3 x 80 B / 80 B/s = 3 s; selection 2 passes x 4000 B / 400 B/s = 20 s
        Prediction p = ScalingModel.predict(f, w, 4, new Compression(0.01, 8, 2));
        assertEquals(3.0 + 20 + 3, p.stepSeconds(), 1e-9);
        assertEquals(3.0, p.communicationSeconds(), 1e-9);
        assertThrows(IllegalArgumentException.class, () -> new Compression(0, 8, 2));
        assertThrows(IllegalArgumentException.class, () -> ScalingModel.predict(f, w, 0, null));
    }

    /** The table of docs/distributed.md is exactly what the model computes. */
    @Test
    void theDocsTableIsTheModels() throws Exception {
        String table = table();
        System.out.println(table);
        String doc = Files.readString(Path.of("docs/distributed.md"));
        assertTrue(doc.contains(table), "docs/distributed.md must contain the model's table:\n" + table);
    }

    static String table() {
        StringBuilder b = new StringBuilder();
        b.append("| workload | GPUs | dense: step ms | dense: efficiency | top-k 0.1 %: step ms | top-k 0.1 %: efficiency"
                + " | dense, half the compute: efficiency |\n");
        b.append("|---|---|---|---|---|---|---|\n");
        for (Workload w : new Workload[] {CHAR_MODEL, RESNET50}) {
            Workload half = new Workload(w.name(), w.parameters(), w.gradientBytes(), w.computeSeconds() / 2,
                    w.bucketCapBytes(), w.samplesPerGpu());
            for (int gpus : new int[] {1, 8, 64, 512}) {
                Prediction dense = ScalingModel.predict(H100, w, gpus, null);
                Prediction topk = ScalingModel.predict(H100, w, gpus, Compression.topK(0.001));
                Prediction fast = ScalingModel.predict(H100, half, gpus, null);
                b.append(String.format(Locale.ROOT, "| %s | %d | %.3f | %.1f %% | %.3f | %.1f %% | %.1f %% |%n",
                        w.name(), gpus, dense.stepSeconds() * 1e3, 100 * dense.efficiency(), topk.stepSeconds() * 1e3,
                        100 * topk.efficiency(), 100 * fast.efficiency()));
            }
        }
        return b.toString();
    }
}
