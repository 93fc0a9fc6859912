package dev.cortado.distributed;

import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

/**
 * An analytic model (not a measurement) of the time per data-parallel training step on N GPUs:
 * compute time per step (an input: measured on one GPU where we have it, otherwise an estimate the
 * caller states), the NCCL all-reduce time of every gradient bucket from an alpha-beta model of
 * ring and tree all-reduce, and the overlap of the bucket all-reduces with the backward the way
 * {@link DistributedDataParallel} does it. It predicts the step time and the scaling efficiency
 * (one GPU's step time over the N-GPU step time, at a fixed batch per GPU), with and without top-k
 * gradient compression ({@link GradientCompression}). docs/distributed.md prints its table.
 *
 * <p>The collective model follows the structure of NCCL's own tuning model: a collective of S
 * bytes costs {@code latency + S / algorithmBandwidth}. Ring all-reduce over p GPUs on n nodes
 * takes {@code 2(p-1)} steps, {@code 2(n-1)} of them across the network: latency {@code base +
 * (2(p-1) - 2(n-1)) alphaIntra + 2(n-1) alphaInter} and algorithm bandwidth {@code busBw p / (2(p-1))}.
 * Tree all-reduce (a chain inside the node, a binary tree across nodes): latency {@code base +
 * 2((p/n - 1) alphaIntra + log2(n) alphaInter)}, algorithm bandwidth {@code busBw / 2}. The faster
 * of the two is taken, as NCCL does. Ring all-gather of m bytes per GPU: {@code p-1} steps,
 * {@code (p-1) m / busBw}. The bus bandwidth is the node's NVLink figure inside one node and the
 * smaller of it and the node's network bandwidth across nodes.
 *
 * <p>The step: forward takes a third of the compute time and backward two thirds; a bucket's
 * gradients are ready when the backward has produced its share of the gradient bytes (buckets in
 * reverse order, as DDP fills them); its collective starts when it is ready and the previous one
 * has finished (one communication stream); the step ends when both the backward and the last
 * collective have. With compression, every bucket's top-k selection is extra work on the compute
 * stream (modelled as {@code passes} passes over the bucket's float32 values at the GPU's memory
 * bandwidth) and its exchange is an all-gather of {@code k} (value, index) pairs per GPU. Not
 * modelled: stragglers and jitter, data loading, network congestion, SHARP/NVLS in-network
 * reduction, the optimizer step (the same on 1 and N GPUs, so it belongs to the compute time).
 */
public final class ScalingModel {
    private ScalingModel() {
    }

    /**
     * A cluster's interconnect: GPUs per node; NCCL bus bandwidth inside a node and the node's
     * network bandwidth (bytes/s); per-collective base latency and per-step hop latencies inside a
     * node and across nodes (seconds); the GPU's memory bandwidth (bytes/s, for compression's
     * selection passes).
     */
    public record Fabric(String name, int gpusPerNode, double intraBusBandwidth, double networkBandwidth,
                         double baseLatency, double intraHopLatency, double interHopLatency,
                         double memoryBandwidth) {
        /** Checks the figures. */
        public Fabric {
            Objects.requireNonNull(name, "name");
            if (gpusPerNode < 1 || !(intraBusBandwidth > 0) || !(networkBandwidth > 0) || !(baseLatency >= 0)
                    || !(intraHopLatency >= 0) || !(interHopLatency >= 0) || !(memoryBandwidth > 0)) {
                throw new IllegalArgumentException("ScalingModel.Fabric " + name + ": every figure must be positive");
            }
        }

        /**
         * DGX/HGX H100 nodes: 8 GPUs on NVLink/NVSwitch at NCCL's ring bus bandwidth of about
         * 370 GB/s (450 GB/s line rate less protocol overhead, as NCCL's maintainers give it;
         * NVLink SHARP reaches more for all-reduce and is left out), one 400 Gb/s InfiniBand NDR NIC
         * per GPU at 47 GB/s each as NCCL reaches it (46-48 GB/s per NIC), NCCL's Simple-protocol
         * latencies (8.4 us per collective, 3.4 us per NVLink step, 9.6 us per network step), and
         * H100 SXM's 3.35 TB/s of HBM3.
         */
        public static Fabric h100NvlinkInfiniband() {
            return new Fabric("8x H100 NVLink per node, 8x 400 Gb/s InfiniBand per node", 8, 370e9, 8 * 47e9,
                    8.4e-6, 3.4e-6, 9.6e-6, 3.35e12);
        }

        /** The bus bandwidth of a collective over {@code gpus} GPUs. */
        public double busBandwidth(int gpus) {
            return gpus <= gpusPerNode ? intraBusBandwidth : Math.min(intraBusBandwidth, networkBandwidth);
        }

        /** Nodes that {@code gpus} GPUs fill. */
        public int nodes(int gpus) {
            return Math.max(1, (gpus + gpusPerNode - 1) / gpusPerNode);
        }
    }

    /**
     * What one GPU trains: the gradient count and bytes per gradient, the compute time of one step
     * on one GPU (seconds; forward, backward and optimizer), DDP's bucket cap in bytes, and the
     * samples one GPU processes per step.
     */
    public record Workload(String name, long parameters, int gradientBytes, double computeSeconds,
                           long bucketCapBytes, long samplesPerGpu) {
        /** Checks the figures. */
        public Workload {
            Objects.requireNonNull(name, "name");
            if (parameters < 1 || gradientBytes < 1 || !(computeSeconds > 0) || bucketCapBytes < 1 || samplesPerGpu < 1) {
                throw new IllegalArgumentException("ScalingModel.Workload " + name + ": every figure must be positive");
            }
        }

        /** The gradient elements of each bucket, in the order their all-reduces start. */
        public long[] buckets() {
            long perBucket = Math.max(1, bucketCapBytes / gradientBytes);
            int n = (int) ((parameters + perBucket - 1) / perBucket);
            long[] sizes = new long[n];
            for (int i = 0; i < n; i++) {
                sizes[i] = Math.min(perBucket, parameters - i * perBucket);
            }
            return sizes;
        }
    }

    /**
     * Top-k compression's cost: the density, the bytes of one (value, index) pair on the wire and
     * the passes over a bucket's values its selection makes on the GPU (|v|, the selection,
     * gather, the residual update, the scatter-add of what arrives).
     */
    public record Compression(double density, int pairBytes, double passes) {
        /** Checks the figures. */
        public Compression {
            if (!(density > 0 && density <= 1) || pairBytes < 1 || !(passes >= 0)) {
                throw new IllegalArgumentException("ScalingModel.Compression: density in (0, 1], positive sizes");
            }
        }

        /** DDP's compression at {@code density}: float32 values, int32 indices, 8 passes. */
        public static Compression topK(double density) {
            return new Compression(density, 8, 8);
        }
    }

    /**
     * The model's answer for one configuration: the step time, the time the collectives take in
     * total, the part of it not hidden behind the backward, the efficiency (one GPU's step time
     * over this one) and the samples per second of the whole job.
     */
    public record Prediction(int gpus, double stepSeconds, double communicationSeconds, double exposedSeconds,
                             double efficiency, double samplesPerSecond) {
    }

    /** NCCL-style all-reduce time of {@code bytes} over {@code gpus} GPUs: the faster of ring and tree. */
    public static double allReduceSeconds(Fabric f, int gpus, double bytes) {
        return Math.min(ringAllReduceSeconds(f, gpus, bytes), treeAllReduceSeconds(f, gpus, bytes));
    }

    /** Ring all-reduce: {@code 2(p-1)} steps, {@code 2(n-1)} across the network. */
    public static double ringAllReduceSeconds(Fabric f, int gpus, double bytes) {
        if (gpus <= 1) {
            return 0;
        }
        int nodes = f.nodes(gpus);
        int steps = 2 * (gpus - 1);
        int interSteps = 2 * (nodes - 1);
        double latency = f.baseLatency() + (steps - interSteps) * f.intraHopLatency() + interSteps * f.interHopLatency();
        double algorithmBandwidth = f.busBandwidth(gpus) * gpus / steps;
        return latency + bytes / algorithmBandwidth;
    }

    /** Tree all-reduce: a chain in each node, a binary tree across nodes, half the bus bandwidth. */
    public static double treeAllReduceSeconds(Fabric f, int gpus, double bytes) {
        if (gpus <= 1) {
            return 0;
        }
        int nodes = f.nodes(gpus);
        int perNode = Math.min(gpus, f.gpusPerNode());
        double log2Nodes = nodes <= 1 ? 0 : Math.ceil(Math.log(nodes) / Math.log(2) - 1e-9);
        double latency = f.baseLatency() + 2 * ((perNode - 1) * f.intraHopLatency() + log2Nodes * f.interHopLatency());
        return latency + bytes / (f.busBandwidth(gpus) / 2);
    }

    /** Ring all-gather of {@code bytesPerGpu} from each of {@code gpus} GPUs. */
    public static double allGatherSeconds(Fabric f, int gpus, double bytesPerGpu) {
        if (gpus <= 1) {
            return 0;
        }
        int nodes = f.nodes(gpus);
        int steps = gpus - 1;
        int interSteps = nodes - 1;
        double latency = f.baseLatency() + (steps - interSteps) * f.intraHopLatency() + interSteps * f.interHopLatency();
        return latency + steps * bytesPerGpu / f.busBandwidth(gpus);
    }

    /**
     * The step on {@code gpus} GPUs of {@code w} over {@code f}, compressed with {@code c} (null:
     * dense all-reduce). The efficiency is against one GPU's uncompressed step ({@code w.computeSeconds()}).
     */
    public static Prediction predict(Fabric f, Workload w, int gpus, Compression c) {
        if (gpus < 1) {
            throw new IllegalArgumentException("ScalingModel.predict: gpus must be >= 1, got " + gpus);
        }
        long[] buckets = w.buckets();
        double forward = w.computeSeconds() / 3;
        double backward = w.computeSeconds() - forward;
        double produced = 0;
        double extraCompute = 0;
        double commEnd = 0;
        double commTotal = 0;
        for (long n : buckets) {
            produced += n;
            double collective;
            if (gpus == 1) {
                collective = 0;
            } else if (c == null) {
                collective = allReduceSeconds(f, gpus, (double) n * w.gradientBytes());
            } else {
                extraCompute += c.passes() * n * 4.0 / f.memoryBandwidth();
                long k = Math.min(n, Math.max(1, (long) Math.ceil(c.density() * n - 1e-9)));
                collective = allGatherSeconds(f, gpus, (double) k * c.pairBytes());
            }
            double ready = forward + backward * produced / w.parameters() + extraCompute;
            double start = Math.max(ready, commEnd);
            commEnd = start + collective;
            commTotal += collective;
        }
        double computeEnd = w.computeSeconds() + extraCompute;
        double step = Math.max(computeEnd, commEnd);
        double exposed = step - w.computeSeconds();
        return new Prediction(gpus, step, commTotal, exposed, w.computeSeconds() / step,
                gpus * w.samplesPerGpu() / step);
    }

    /** {@link #predict} at each of {@code gpuCounts}. */
    public static List<Prediction> sweep(Fabric f, Workload w, Compression c, int... gpuCounts) {
        List<Prediction> out = new ArrayList<>();
        for (int g : gpuCounts) {
            out.add(predict(f, w, g, c));
        }
        return out;
    }
}
