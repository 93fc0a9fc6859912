package dev.cortado.distributed;

import static dev.cortado.distributed.CollectivesWorker.check;

import dev.cortado.autograd.Autograd;
import dev.cortado.graph.CompileOptions;
import dev.cortado.graph.Graphs;
import dev.cortado.graph.TrainingStep;
import dev.cortado.io.Batch;
import dev.cortado.io.DataLoader;
import dev.cortado.io.Mnist;
import dev.cortado.io.TensorDataset;
import dev.cortado.nn.Activation;
import dev.cortado.nn.Flatten;
import dev.cortado.nn.Linear;
import dev.cortado.nn.Losses;
import dev.cortado.nn.Module;
import dev.cortado.nn.ParamOptions;
import dev.cortado.nn.Sequential;
import dev.cortado.optim.Sgd;
import dev.cortado.sparse.DeepGradientCompression;
import dev.cortado.sparse.DensitySchedule;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;
import java.util.Arrays;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * DistributedDataParallel with gradient compression built in, and under a compiled training step,
 * across the processes of {@link MpiProcessGroupTest}. Each method returns its number of checks.
 */
final class CompressedDdpScenario {
    private CompressedDdpScenario() {
    }

    /**
     * Compression's exchange: (1) at density 1 (every entry sent) compressed DDP equals one process
     * training on the concatenated batch (float32 tolerance 2e-5, as the dense DDP test); (2) with
     * small buckets at density 1% and DGC momentum, the replicas stay bitwise identical after every
     * step (each parameter's MIN and MAX over ranks are equal), the bytes reported equal
     * {@code sum over buckets of ceil(d n_b) (4 + 4)} exactly and the dense figure {@code 4 n};
     * (3) one default 25 MiB bucket at 0.1% sends at least 100x fewer values than dense; (4) an
     * all-gather started before the backward ended (the compression is inside the overlap).
     */
    static int compressed(ProcessGroup group) {
        int rank = group.rank();
        int p = group.worldSize();
        int global = DdpScenario.PER_RANK * p;
        int checks = 0;
        // (1) density 1: the exchange is exact
        try (Sequential replica = DdpScenario.model(rank == 0 ? 7 : 100 + rank);
             Sequential reference = DdpScenario.model(7);
             DistributedDataParallel ddp = DistributedDataParallel.builder(replica, group).bucketCapBytes(2048)
                     .compression(GradientCompression.topK().density(1.0).build()).build();
             Sgd opt = Sgd.builder().lr(0.2).momentum(0.9).build(replica.parameters());
             Sgd refOpt = Sgd.builder().lr(0.2).momentum(0.9).build(reference.parameters())) {
            for (int step = 0; step < 3; step++) {
                opt.zeroGrad();
                refOpt.zeroGrad();
                try (Tensor l = DdpScenario.loss(replica, step, rank * DdpScenario.PER_RANK, (rank + 1) * DdpScenario.PER_RANK)) {
                    ddp.backward(l);
                }
                try (Tensor l = DdpScenario.loss(reference, step, 0, global)) {
                    l.backward();
                }
                DdpScenario.assertGradientsSame(replica, reference, "compressed at density 1, step " + step);
                opt.step();
                refOpt.step();
            }
            DdpScenario.assertSame(replica, reference, 2e-5, "compressed at density 1 after 3 steps");
            checks++;
        }
        // (2) 1% density, several buckets: identical replicas and the exact byte count
        double density = 0.01;
        try (Sequential replica = DdpScenario.model(rank == 0 ? 7 : 100 + rank);
             DistributedDataParallel ddp = DistributedDataParallel.builder(replica, group).bucketCapBytes(2048)
                     .compression(GradientCompression.topK().density(density).momentum(0.9).build()).build();
             Sgd opt = Sgd.builder().lr(0.2).build(replica.parameters())) {
            check(ddp.bucketCount() >= 3, "small buckets: " + ddp.bucketCount());
            long[] bucketSizes = bucketSizes(replica, 2048);
            long expectedBytes = 0;
            long denseBytes = 0;
            for (long n : bucketSizes) {
                expectedBytes += DeepGradientCompression.count(n, density) * (4 + 4);
                denseBytes += 4 * n;
            }
            for (int step = 0; step < 6; step++) {
                opt.zeroGrad();
                try (Tensor l = DdpScenario.loss(replica, step, rank * DdpScenario.PER_RANK, (rank + 1) * DdpScenario.PER_RANK)) {
                    ddp.backward(l);
                }
                opt.step();
                assertReplicasIdentical(group, replica, "compressed step " + step);
                var r = ddp.lastStep();
                check(r.bytesSent() == expectedBytes && r.denseBytes() == denseBytes, "bytes sent " + r.bytesSent()
                        + " of " + r.denseBytes() + ", expected " + expectedBytes + " of " + denseBytes
                        + " (buckets " + Arrays.toString(bucketSizes) + ")");
            }
            checks += 2;
            if (rank == 0) {
                System.out.printf(Locale.ROOT, "compressed DDP at 1%%: %d buckets %s, %d of %d bytes sent (%.4f)%n",
                        ddp.bucketCount(), Arrays.toString(bucketSizes), ddp.lastStep().bytesSent(),
                        ddp.lastStep().denseBytes(), ddp.lastStep().sentFraction());
            }
        }
        // (3) 0.1% in one bucket: >= 100x fewer values; (4) overlap
        try (Sequential replica = DdpScenario.model(7);
             DistributedDataParallel ddp = DistributedDataParallel.builder(replica, group)
                     .compression(GradientCompression.topK().build()).build()) {
            try (Tensor l = DdpScenario.loss(replica, 0, rank * DdpScenario.PER_RANK, (rank + 1) * DdpScenario.PER_RANK)) {
                ddp.backward(l);
            }
            long n = 0;
            for (Tensor t : replica.parameters()) {
                n += t.numel();
            }
            long k = DeepGradientCompression.count(n, 0.001);
            var r = ddp.lastStep();
            check(ddp.bucketCount() == 1 && r.bytesSent() == k * 8 && n / k >= 100,
                    "0.1%: " + k + " of " + n + " values, " + r.bytesSent() + " bytes");
            check(r.bucketsLaunchedDuringBackward() == 1, "the compressed bucket's all-gather started during the backward");
            checks += 2;
        }
        return checks;
    }

    /** Gradient elements per bucket, as DistributedDataParallel groups them (reverse order, capped). */
    private static long[] bucketSizes(Module m, long cap) {
        var params = new java.util.ArrayList<>(m.parameters());
        java.util.Collections.reverse(params);
        var sizes = new java.util.ArrayList<Long>();
        long current = 0;
        for (Tensor t : params) {
            if (current > 0 && (current + t.numel()) * 4 > cap) {
                sizes.add(current);
                current = 0;
            }
            current += t.numel();
        }
        sizes.add(current);
        return sizes.stream().mapToLong(Long::longValue).toArray();
    }

    /** Every parameter's element-wise MIN and MAX over the ranks are equal: the replicas are bitwise identical. */
    static void assertReplicasIdentical(ProcessGroup group, Module m, String when) {
        try (Scope s = Scope.open(); var off = Autograd.noGrad()) {
            for (var e : m.namedParameters().entrySet()) {
                Tensor min = e.getValue().copy();
                Tensor max = e.getValue().copy();
                Work a = group.allReduce(min, ReduceOp.MIN);
                Work b = group.allReduce(max, ReduceOp.MAX);
                a.await();
                b.await();
                check(Arrays.equals(min.toFloatArray(), max.toFloatArray()), "replicas differ in " + e.getKey() + " " + when);
            }
        }
    }

    /**
     * Error feedback: a linear loss {@code w . c_r} gives rank r the same gradient {@code c_r} at
     * every step, so the true average gradient is {@code gbar = mean_r c_r}. Top-k at 5% with error
     * feedback sends every entry eventually: over T = 400 steps the average of the gradients DDP
     * delivered equals {@code gbar} up to the residual left at the end, {@code |A/T - gbar| / |gbar|
     * <= 0.1}. Without error feedback the same 5% of each {@code c_r} would be sent every step and
     * the rest never (relative error about 0.9).
     */
    static int errorFeedback(ProcessGroup group) {
        int rank = group.rank();
        int p = group.worldSize();
        int n = 1000;
        int steps = 400;
        double[] mean = new double[n];
        float[] mine = null;
        for (int r = 0; r < p; r++) {
            SplittableRandom random = new SplittableRandom(500 + r);
            float[] c = new float[n];
            for (int i = 0; i < n; i++) {
                // heavy-tailed magnitudes, so the top 5% are a small part of the norm
                c[i] = (float) (random.nextDouble(-1, 1) * (1 + 3 * random.nextDouble()));
                mean[i] += c[i] / p;
            }
            if (r == rank) {
                mine = c;
            }
        }
        double[] delivered = new double[n];
        try (Linear model = new Linear(n, 1, false, ParamOptions.seeded(3));
             DistributedDataParallel ddp = DistributedDataParallel.builder(model, group)
                     .compression(GradientCompression.topK().density(0.05).build()).build();
             Tensor c = Tensor.of(mine, 1, n)) {
            Tensor w = model.parameters().get(0);
            for (int step = 0; step < steps; step++) {
                model.zeroGrad();
                try (Tensor out = model.apply(c); Tensor l = out.sum()) {
                    ddp.backward(l);
                }
                float[] g = w.grad().toFloatArray();
                for (int i = 0; i < n; i++) {
                    delivered[i] += g[i];
                }
            }
        }
        double err = 0;
        double norm = 0;
        for (int i = 0; i < n; i++) {
            err += Math.pow(delivered[i] / steps - mean[i], 2);
            norm += mean[i] * mean[i];
        }
        double relative = Math.sqrt(err / norm);
        System.out.printf(Locale.ROOT, "rank %d: error feedback: |mean delivered - mean gradient| / |mean gradient| = %.4f%n",
                rank, relative);
        check(relative <= 0.1, "with error feedback the delivered gradients average to the true one: relative error "
                + relative);
        return 1;
    }

    /**
     * MNIST with a 784-64-10 MLP on 2 processes (each its shard of the 10k shipped training digits,
     * batch 32 per process, 2 epochs = 312 steps, SGD lr 0.05 with momentum 0.9), once with dense
     * all-reduce and once compressed (DGC: density warm-up 25%, 6.25%, 1.6% then 1% of every
     * bucket; momentum 0.9 in the compressor, SGD without momentum). Accuracy on the first 2,000 t10k
     * digits: the dense run must be above 88% (chance is 10%; it reaches 90.95%) and the compressed run within 1.5
     * points of it.
     */
    static int mnist(ProcessGroup group) {
        int rank = group.rank();
        int p = group.worldSize();
        double dense;
        double compressed;
        try (TensorDataset train = Mnist.train10k(true); TensorDataset test = Mnist.test(true)) {
            dense = trainMnist(group, train, test, null);
            compressed = trainMnist(group, train, test, GradientCompression.topK()
                    .density(DensitySchedule.warmup(20, 0.25, 0.0625, 0.015625, 0.01)).momentum(0.9).build());
        }
        System.out.printf(Locale.ROOT, "rank %d of %d: MNIST accuracy dense %.4f, compressed %.4f%n", rank, p, dense,
                compressed);
        check(dense > 0.88, "the dense run learned: " + dense);
        check(compressed >= dense - 0.015, "compressed " + compressed + " within 1.5 points of dense " + dense);
        return 2;
    }

    private static double trainMnist(ProcessGroup group, TensorDataset train, TensorDataset test,
                                     GradientCompression compression) {
        int batch = 32;
        int epochs = 2;
        ParamOptions o = ParamOptions.seeded(41);
        try (Sequential model = new Sequential(new Flatten(), new Linear(784, 64, true, o), Activation.relu(),
                new Linear(64, 10, true, o));
             DistributedDataParallel ddp = DistributedDataParallel.builder(model, group).compression(compression).build();
             Sgd sgd = Sgd.builder().lr(0.05).momentum(compression == null ? 0.9 : 0).build(model.parameters());
             DataLoader loader = DataLoader.builder(train).batchSize(batch).shuffle(7).dropLast(true)
                     .shard(group.rank(), group.worldSize()).build()) {
            for (int e = 0; e < epochs; e++) {
                try (DataLoader.Epoch batches = loader.epoch(e)) {
                    while (batches.hasNext()) {
                        try (Batch b = batches.next(); Scope s = Scope.open()) {
                            sgd.zeroGrad();
                            ddp.backward(Losses.crossEntropy(model.forward(b.input()), b.target()));
                            sgd.step();
                        }
                    }
                }
            }
            assertReplicasIdentical(group, model, "after MNIST training");
            long right = 0;
            model.train(false);
            try (var g = Autograd.noGrad(); DataLoader eval = DataLoader.builder(test).batchSize(1000).build();
                 DataLoader.Epoch batches = eval.epoch(0)) {
                for (int i = 0; i < 2; i++) {
                    try (Batch b = batches.next(); Scope s = Scope.open()) {
                        right += (long) model.forward(b.input()).argmax(1).eq(b.target()).sum().item();
                    }
                }
            }
            return right / 2000.0;
        }
    }

    /**
     * DDP under the compiled training step: a replica trained by {@code Graphs.compileTrainingStep}
     * with {@code CompileOptions.dataParallel(ddp)} must hold the parameters of an eager-DDP replica
     * after 4 SGD-momentum steps (both from rank 0's weights; float32 tolerance 2e-5), and of one
     * process on the concatenated batch.
     */
    static int compiled(ProcessGroup group) {
        int rank = group.rank();
        int p = group.worldSize();
        int global = DdpScenario.PER_RANK * p;
        int from = rank * DdpScenario.PER_RANK;
        int to = from + DdpScenario.PER_RANK;
        try (Sequential eager = DdpScenario.model(rank == 0 ? 7 : 100 + rank);
             Sequential compiled = DdpScenario.model(rank == 0 ? 7 : 200 + rank);
             Sequential reference = DdpScenario.model(7);
             DistributedDataParallel eagerDdp = DistributedDataParallel.builder(eager, group).bucketCapBytes(2048).build();
             DistributedDataParallel compiledDdp = DistributedDataParallel.builder(compiled, group).bucketCapBytes(2048).build();
             Sgd eagerOpt = Sgd.builder().lr(0.2).momentum(0.9).build(eager.parameters());
             Sgd compiledOpt = Sgd.builder().lr(0.2).momentum(0.9).build(compiled.parameters());
             Sgd refOpt = Sgd.builder().lr(0.2).momentum(0.9).build(reference.parameters());
             Tensor x0 = DdpScenario.inputs(0, from, to);
             Tensor y0 = DdpScenario.targets(0, from, to);
             TrainingStep step = Graphs.compileTrainingStep(compiled, Losses::crossEntropy, compiledOpt, x0, y0,
                     CompileOptions.builder().dataParallel(compiledDdp).build())) {
            DdpScenario.assertSame(compiled, reference, 0, "compiled: after the capture");
            for (int s = 0; s < 4; s++) {
                eagerOpt.zeroGrad();
                refOpt.zeroGrad();
                try (Tensor l = DdpScenario.loss(eager, s, from, to)) {
                    eagerDdp.backward(l);
                }
                eagerOpt.step();
                try (Tensor x = DdpScenario.inputs(s, from, to); Tensor y = DdpScenario.targets(s, from, to);
                     Tensor l = step.run(x, y)) {
                    check(Float.isFinite(l.toFloatArray()[0]), "compiled loss");
                }
                try (Tensor l = DdpScenario.loss(reference, s, 0, global)) {
                    l.backward();
                }
                refOpt.step();
            }
            DdpScenario.assertSame(compiled, eager, 2e-5, "compiled DDP vs eager DDP after 4 steps");
            DdpScenario.assertSame(compiled, reference, 2e-5, "compiled DDP vs one process after 4 steps");
            assertReplicasIdentical(group, compiled, "compiled DDP");
        }
        return 3;
    }
}
