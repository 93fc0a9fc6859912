package dev.cortado.distributed;

import dev.cortado.tensor.DType;
import dev.cortado.tensor.Tensor;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/**
 * One process of {@link MpiProcessGroupTest}'s jobs ({@code mpirun -np N java ... CollectivesWorker
 * <scenario>}). Every rank can make every rank's input (seeded by rank), so each checks its result
 * against a float64 reference of the whole collective computed locally. Prints
 * {@code rank R of N: K checks passed} and exits 0, or prints the failure and exits 1.
 */
final class CollectivesWorker {
    private CollectivesWorker() {
    }

    public static void main(String[] args) {
        String scenario = args.length > 0 ? args[0] : "collectives";
        int exit = 0;
        var options = ProcessGroup.Options.builder()
                .timeout(Duration.ofSeconds(scenario.equals("hang") ? 3 : 60)).build();
        try (ProcessGroup group = ProcessGroup.mpi(options)) {
            int checks = switch (scenario) {
                case "collectives" -> collectives(group);
                case "hang" -> hang(group);
                case "ddp" -> DdpScenario.run(group);
                case "nccl" -> nccl(group);
                case "die" -> die(group);
                case "dgc" -> dgc(group);
                case "resume" -> DdpScenario.resume(group, java.nio.file.Path.of(args[1]));
                case "ddp-compressed" -> CompressedDdpScenario.compressed(group);
                case "error-feedback" -> CompressedDdpScenario.errorFeedback(group);
                case "mnist-compressed" -> CompressedDdpScenario.mnist(group);
                case "ddp-compiled" -> CompressedDdpScenario.compiled(group);
                default -> throw new IllegalArgumentException("unknown scenario " + scenario);
            };
            System.out.println("rank " + group.rank() + " of " + group.worldSize() + ": " + checks + " checks passed");
        } catch (Throwable e) {
            System.out.println("FAILED: " + e);
            e.printStackTrace(System.out);
            exit = 1;
        }
        System.out.flush();
        System.exit(exit);
    }

    /** Rank r's input of collective number {@code tag}: values in [-1, 1), never all zero. */
    static double[] input(int rank, int tag, int n) {
        SplittableRandom random = new SplittableRandom(1000L * tag + rank);
        double[] x = new double[n];
        for (int i = 0; i < n; i++) {
            x[i] = random.nextDouble(-1, 1);
        }
        return x;
    }

    static float[] floats(double[] x) {
        float[] f = new float[x.length];
        for (int i = 0; i < x.length; i++) {
            f[i] = (float) x[i];
        }
        return f;
    }

    static void check(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError(what);
        }
    }

    static void close(double expected, double actual, double tolerance, String what) {
        check(Math.abs(expected - actual) <= tolerance, what + ": expected " + expected + " but got " + actual);
    }

    static int collectives(ProcessGroup group) {
        int rank = group.rank();
        int p = group.worldSize();
        int checks = 0;
        // float32 all-reduce, every operator, an odd size; tolerance: p float32 roundings of |x| <= 1
        // plus the one of the input, relative 1e-6 of the sum of magnitudes
        int n = 1001;
        int tag = 0;
        for (ReduceOp op : ReduceOp.values()) {
            tag++;
            try (Tensor t = Tensor.of(floats(input(rank, tag, n)), n)) {
                group.allReduce(t, op).await();
                float[] got = t.toFloatArray();
                for (int i = 0; i < n; i++) {
                    double sum = 0;
                    double max = Double.NEGATIVE_INFINITY;
                    double min = Double.POSITIVE_INFINITY;
                    for (int r = 0; r < p; r++) {
                        double v = (float) input(r, tag, n)[i];
                        sum += v;
                        max = Math.max(max, v);
                        min = Math.min(min, v);
                    }
                    double expected = switch (op) {
                        case SUM -> sum;
                        case AVG -> sum / p;
                        case MAX -> max;
                        case MIN -> min;
                    };
                    close(expected, got[i], 1e-6 * p, "all_reduce(" + op + ") float32 element " + i);
                }
                checks++;
            }
        }
        // float64 and int64 sums: float64 to 1e-14, int64 exactly
        tag++;
        try (Tensor d = Tensor.of(input(rank, tag, 17), 17);
             Tensor l = Tensor.of(new long[] {rank * 1_000_000_007L, -rank, Long.MAX_VALUE / 8}, 3)) {
            Work first = group.allReduce(d, ReduceOp.SUM);
            Work second = group.allReduce(l, ReduceOp.SUM);   // queued behind the first
            second.await();
            check(first.isCompleted(), "collectives complete in call order");
            double[] got = d.toDoubleArray();
            for (int i = 0; i < 17; i++) {
                double sum = 0;
                for (int r = 0; r < p; r++) {
                    sum += input(r, tag, 17)[i];
                }
                close(sum, got[i], 1e-14 * p, "all_reduce(sum) float64 element " + i);
            }
            long ranks = (long) p * (p - 1) / 2;
            long[] exact = l.toLongArray();
            check(exact[0] == ranks * 1_000_000_007L && exact[1] == -ranks && exact[2] == p * (Long.MAX_VALUE / 8),
                    "all_reduce(sum) int64 exact: " + java.util.Arrays.toString(exact));
            checks += 2;
        }
        // broadcast from the last rank, a 2-D tensor
        tag++;
        int root = p - 1;
        try (Tensor b = Tensor.of(floats(input(rank, tag, 12)), 3, 4)) {
            group.broadcast(b, root).await();
            float[] want = floats(input(root, tag, 12));
            check(java.util.Arrays.equals(want, b.toFloatArray()), "broadcast from rank " + root + " is bitwise root's");
            checks++;
        }
        // all-gather: rank order, bitwise
        tag++;
        try (Tensor in = Tensor.of(floats(input(rank, tag, 7)), 7);
             Tensor out = Tensor.empty(DType.FLOAT32, p, 7)) {
            group.allGather(out, in).await();
            float[] got = out.toFloatArray();
            for (int r = 0; r < p; r++) {
                float[] want = floats(input(r, tag, 7));
                for (int i = 0; i < 7; i++) {
                    check(got[r * 7 + i] == want[i], "all_gather part " + r + " element " + i);
                }
            }
            checks++;
        }
        // reduce-scatter: part `rank` of the sum
        tag++;
        int part = 5;
        try (Tensor in = Tensor.of(floats(input(rank, tag, part * p)), part * p);
             Tensor out = Tensor.empty(DType.FLOAT32, part)) {
            group.reduceScatter(out, in, ReduceOp.SUM).await();
            float[] got = out.toFloatArray();
            for (int i = 0; i < part; i++) {
                double sum = 0;
                for (int r = 0; r < p; r++) {
                    sum += (float) input(r, tag, part * p)[rank * part + i];
                }
                close(sum, got[i], 1e-6 * p, "reduce_scatter element " + i);
            }
            checks++;
        }
        // an empty tensor is a successful no-op; the barrier completes
        try (Tensor empty = Tensor.empty(DType.FLOAT32, 0, 3)) {
            group.allReduce(empty, ReduceOp.SUM).await();
            group.barrier().await();
            checks++;
        }
        // bad input: a clear exception before anything is sent (every rank the same, so no deadlock)
        List<String> messages = new ArrayList<>();
        try (Tensor m = Tensor.of(floats(input(rank, 99, 6)), 2, 3)) {
            Tensor view = m.transpose(0, 1);
            try {
                group.allReduce(view, ReduceOp.SUM);
            } catch (IllegalArgumentException e) {
                messages.add(e.getMessage());
            }
            try (Tensor half = Tensor.empty(DType.BFLOAT16, 4)) {
                group.allReduce(half, ReduceOp.SUM);
            } catch (IllegalArgumentException e) {
                messages.add(e.getMessage());
            }
            try (Tensor wrong = Tensor.empty(DType.FLOAT32, p * 6 + 1)) {
                group.allGather(wrong, m);
            } catch (IllegalArgumentException e) {
                messages.add(e.getMessage());
            }
        }
        check(messages.size() == 3, "three bad calls refused: " + messages);
        check(messages.get(0).contains("all_reduce(sum)") && messages.get(0).contains("non-contiguous")
                && messages.get(0).contains("float32[3, 2]"), messages.get(0));
        check(messages.get(1).contains("bfloat16"), messages.get(1));
        check(messages.get(2).contains("all_gather") && messages.get(2).contains("worldSize"), messages.get(2));
        checks++;
        return checks;
    }

    /**
     * The compressed all-reduce at 0.1% density: every rank's result equals the average over ranks
     * of what each rank's compressor sent (each rank rebuilds every rank's gradients and
     * compressions locally as the reference), over two steps (the second sends from the
     * residual), with at least 100x fewer values than a dense exchange.
     */
    static int dgc(ProcessGroup group) {
        int rank = group.rank();
        int p = group.worldSize();
        long[][] shapes = {{200_003}, {37, 11}};
        int checks = 0;
        java.util.List<Tensor> params = new java.util.ArrayList<>();
        java.util.List<java.util.List<Tensor>> others = new java.util.ArrayList<>();
        java.util.List<dev.cortado.sparse.DeepGradientCompression> references = new java.util.ArrayList<>();
        try {
            for (long[] shape : shapes) {
                params.add(Tensor.zeros(DType.FLOAT32, shape).requiresGrad(true));
            }
            for (int r = 0; r < p; r++) {
                java.util.List<Tensor> copy = new java.util.ArrayList<>();
                for (long[] shape : shapes) {
                    copy.add(Tensor.zeros(DType.FLOAT32, shape).requiresGrad(true));
                }
                others.add(copy);
                references.add(dev.cortado.sparse.DeepGradientCompression.builder().density(0.001).momentum(0)
                        .build(copy));
            }
            try (var dgc = dev.cortado.sparse.DeepGradientCompression.builder().density(0.001).momentum(0).build(params)) {
                for (int step = 0; step < 2; step++) {
                    for (int t = 0; t < shapes.length; t++) {
                        int n = (int) params.get(t).numel();
                        params.get(t).setGrad(Tensor.of(floats(input(rank, 10 * step + t, n)), shapes[t]));
                        for (int r = 0; r < p; r++) {
                            others.get(r).get(t).setGrad(Tensor.of(floats(input(r, 10 * step + t, n)), shapes[t]));
                        }
                    }
                    CompressedAllReduce.Report report = CompressedAllReduce.exchange(group, dgc, params);
                    java.util.List<dev.cortado.sparse.CompressedGradients> sent = new java.util.ArrayList<>();
                    for (var ref : references) {
                        sent.add(ref.compress());
                    }
                    java.util.List<Tensor> expected = dev.cortado.sparse.CompressedGradients.sum(sent, 1.0 / p);
                    for (int t = 0; t < shapes.length; t++) {
                        float[] want = expected.get(t).toFloatArray();
                        float[] got = params.get(t).grad().toFloatArray();
                        int nonzero = 0;
                        for (int i = 0; i < want.length; i++) {
                            close(want[i], got[i], 1e-6, "dgc step " + step + " tensor " + t + " element " + i);
                            nonzero += got[i] != 0 ? 1 : 0;
                        }
                        check(nonzero > 0 && nonzero <= p * Math.ceil(0.001 * want.length), "dgc sends top-k only: " + nonzero);
                        expected.get(t).close();
                    }
                    sent.forEach(dev.cortado.sparse.CompressedGradients::close);
                    check(report.reduction() >= 100, "dgc sends >= 100x fewer values: " + report);
                    if (rank == 0 && step == 1) {
                        System.out.printf(java.util.Locale.ROOT, "dgc: %d of %d values sent (%.0fx fewer)%n",
                                report.valuesSent(), report.denseValues(), report.reduction());
                    }
                    checks++;
                }
            }
        } finally {
            references.forEach(dev.cortado.sparse.DeepGradientCompression::close);
            params.forEach(Tensor::close);
            others.forEach(l -> l.forEach(Tensor::close));
        }
        return checks;
    }

    /**
     * A peer that dies: rank 1 halts (as a crash would) while rank 0 waits in an all-reduce with a
     * 60 s timeout; the launcher must end the job long before that.
     */
    static int die(ProcessGroup group) {
        if (group.rank() == 1) {
            System.out.println("rank 1 halts");
            System.out.flush();
            Runtime.getRuntime().halt(7);
        }
        try (Tensor t = Tensor.ones(DType.FLOAT32, 8)) {
            group.allReduce(t, ReduceOp.SUM).await(Duration.ofSeconds(60));
        }
        return 0;
    }

    /** The NCCL group over this MPI world, one GPU per rank: all-reduce, all-gather and broadcast checked. */
    static int nccl(ProcessGroup mpi) {
        int rank = mpi.rank();
        int p = mpi.worldSize();
        dev.cortado.tensor.Device gpu = dev.cortado.tensor.Device.cuda(rank);
        int checks = 0;
        try (ProcessGroup group = ProcessGroup.nccl(gpu, mpi, ProcessGroup.Options.builder().timeout(Duration.ofSeconds(60)).build());
             Tensor host = Tensor.of(floats(input(rank, 1, 999)), 999);
             Tensor t = host.to(gpu);
             Tensor out = Tensor.empty(DType.FLOAT32, gpu, p, 999)) {
            group.allGather(out, t).await();
            float[] got = out.toFloatArray();
            for (int r = 0; r < p; r++) {
                float[] want = floats(input(r, 1, 999));
                for (int i = 0; i < 999; i++) {
                    check(got[r * 999 + i] == want[i], "nccl all_gather part " + r + " element " + i);
                }
            }
            checks++;
            group.allReduce(t, ReduceOp.SUM).await();
            float[] sum = t.toFloatArray();
            for (int i = 0; i < 999; i++) {
                double s = 0;
                for (int r = 0; r < p; r++) {
                    s += (float) input(r, 1, 999)[i];
                }
                close(s, sum[i], 1e-6 * p, "nccl all_reduce element " + i);
            }
            checks++;
            group.broadcast(t, p - 1).await();
            checks++;
        }
        return checks;
    }

    /**
     * A peer that never joins: every rank but 0 skips the all-reduce and waits at a barrier; rank
     * 0's all-reduce cannot complete, so its await fails within the 3 s timeout with the message,
     * and rank 0 aborts the job (the way to end a job whose collective is stuck).
     */
    static int hang(ProcessGroup group) {
        if (group.rank() == 0) {
            try (Tensor t = Tensor.ones(DType.FLOAT32, 8)) {
                long start = System.nanoTime();
                try {
                    group.allReduce(t, ReduceOp.SUM).await();
                    throw new AssertionError("the all-reduce completed without its peers");
                } catch (CommunicationException e) {
                    long ms = (System.nanoTime() - start) / 1_000_000;
                    System.out.println("rank 0 gave up after " + ms + " ms: " + e.getMessage());
                    System.out.flush();
                    group.abort(3);
                }
            }
        } else {
            try {
                Thread.sleep(60_000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        return 0;
    }
}
