package dev.cortado.distributed;

import dev.cortado.nn.Activation;
import dev.cortado.nn.Linear;
import dev.cortado.nn.Losses;
import dev.cortado.nn.Module;
import dev.cortado.nn.ParamOptions;
import dev.cortado.nn.Sequential;
import dev.cortado.optim.Sgd;
import dev.cortado.tensor.Tensor;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * DistributedDataParallel across the processes of {@link MpiProcessGroupTest}: each rank trains on
 * its shard of a global batch, and every rank also trains a single-process reference on the whole
 * batch; after the steps both must hold the same parameters (float32 tolerance 2e-5: the
 * all-reduce sums in another order than the one-process backward).
 */
final class DdpScenario {
    static final int IN = 12;
    static final int HIDDEN = 33;
    static final int CLASSES = 5;
    static final int PER_RANK = 6;

    private DdpScenario() {
    }

    static Sequential model(long seed) {
        ParamOptions o = ParamOptions.seeded(seed);
        return new Sequential(new Linear(IN, HIDDEN, true, o), Activation.relu(), new Linear(HIDDEN, HIDDEN, true, o),
                Activation.relu(), new Linear(HIDDEN, CLASSES, true, o));
    }

    /** Rows [from, to) of step {@code step}'s global batch. */
    static Tensor inputs(int step, int from, int to) {
        SplittableRandom r = new SplittableRandom(step);
        float[] all = new float[to * IN];
        for (int i = 0; i < all.length; i++) {
            all[i] = (float) r.nextDouble(-1, 1);
        }
        float[] part = java.util.Arrays.copyOfRange(all, from * IN, to * IN);
        return Tensor.of(part, to - from, IN);
    }

    static Tensor targets(int step, int from, int to) {
        long[] t = new long[to - from];
        for (int i = from; i < to; i++) {
            t[i - from] = Math.floorMod(i * 7 + step * 3, CLASSES);
        }
        return Tensor.of(t, to - from);
    }

    static Tensor loss(Module m, int step, int from, int to) {
        try (Tensor x = inputs(step, from, to); Tensor y = targets(step, from, to); Tensor logits = m.apply(x)) {
            return Losses.crossEntropy(logits, y);
        }
    }

    static int run(ProcessGroup group) {
        int rank = group.rank();
        int p = group.worldSize();
        int global = PER_RANK * p;
        int checks = 0;
        // rank 0's initial parameters win: the other ranks start from different ones
        try (Sequential replica = model(rank == 0 ? 7 : 100 + rank);
             Sequential reference = model(7);
             DistributedDataParallel ddp = DistributedDataParallel.builder(replica, group).bucketCapBytes(2048).build()) {
            CollectivesWorker.check(ddp.bucketCount() >= 3, "small buckets: " + ddp.bucketCount());
            assertSame(replica, reference, 0, "after the broadcast at wrap time");
            checks++;
            Sgd opt = Sgd.builder().lr(0.2).momentum(0.9).build(replica.parameters());
            Sgd refOpt = Sgd.builder().lr(0.2).momentum(0.9).build(reference.parameters());
            for (int step = 0; step < 4; step++) {
                opt.zeroGrad();
                refOpt.zeroGrad();
                if (step == 2) {
                    // gradient accumulation: two micro-batches, communication only on the second
                    try (AutoCloseable local = ddp.noSync(); Tensor l = loss(replica, 100, rank * 3, rank * 3 + 3)) {
                        ddp.backward(l);
                    } catch (Exception e) {
                        throw new AssertionError(e);
                    }
                    try (Tensor l = loss(replica, step, rank * PER_RANK, (rank + 1) * PER_RANK)) {
                        ddp.backward(l);
                    }
                    // reference: the average over ranks of (micro-batch mean + shard mean)
                    try (Tensor a = loss(reference, 100, 0, 3 * p); Tensor b = loss(reference, step, 0, global);
                         Tensor sum = a.add(b)) {
                        sum.backward();
                    }
                } else {
                    try (Tensor l = loss(replica, step, rank * PER_RANK, (rank + 1) * PER_RANK)) {
                        ddp.backward(l);
                    }
                    try (Tensor l = loss(reference, step, 0, global)) {
                        l.backward();
                    }
                }
                assertGradientsSame(replica, reference, "step " + step);
                opt.step();
                refOpt.step();
            }
            assertSame(replica, reference, 2e-5, "after 4 steps");
            checks += 2;
            var report = ddp.lastStep();
            System.out.println("rank " + rank + ": " + ddp.bucketCount() + " buckets, "
                    + report.bucketsLaunchedDuringBackward() + " launched before the backward ended");
            CollectivesWorker.check(report.bucketsLaunchedDuringBackward() >= 1,
                    "an all-reduce started during the backward (overlap)");
            checks++;
        }
        // a parameter the forward never uses: a clear error naming it, or zeros when allowed
        for (boolean allow : new boolean[] {false, true}) {
            try (Module both = new TwoParts(model(7), new Linear(3, 3, true, ParamOptions.seeded(1)));
                 DistributedDataParallel ddp = DistributedDataParallel.builder(both, group).bucketCapBytes(512)
                         .findUnusedParameters(allow).build();
                 Tensor l = loss(both.child("used"), 0, rank * PER_RANK, (rank + 1) * PER_RANK)) {
                try {
                    ddp.backward(l);
                    CollectivesWorker.check(allow, "unused parameters refused");
                    CollectivesWorker.check(both.child("unused").parameter("weight").grad() != null
                            && both.child("unused").parameter("weight").grad().toFloatArray()[0] == 0f, "an unused gradient is zero");
                } catch (IllegalStateException e) {
                    CollectivesWorker.check(!allow && e.getMessage().contains("unused.weight")
                            && e.getMessage().contains("findUnusedParameters"), e.getMessage());
                }
                checks++;
            }
        }
        return checks;
    }

    /**
     * Resume on every rank: 2 DDP steps with AdamW, a checkpoint (rank 0 writes, all wait), then
     * fresh replicas and optimizers (other seeds on every rank, fresh moments) resume from it and
     * take 2 more steps; they must equal a single-process reference that never stopped (so every
     * rank really loaded the optimizer's moments, which the broadcast at wrap time does not carry).
     * Then ranks that read different checkpoints must all fail, naming the steps.
     */
    static int resume(ProcessGroup group, java.nio.file.Path dir) throws java.io.IOException {
        int rank = group.rank();
        int p = group.worldSize();
        int global = PER_RANK * p;
        java.nio.file.Path ckpt = dir.resolve("ddp.safetensors");
        int checks = 0;
        try (Sequential reference = model(7)) {
            dev.cortado.optim.Optimizer refOpt = dev.cortado.optim.Adam.adamW().lr(0.05).weightDecay(0.01)
                    .build(reference.parameters());
            try (Sequential replica = model(rank == 0 ? 7 : 100 + rank);
                 DistributedDataParallel ddp = DistributedDataParallel.builder(replica, group).bucketCapBytes(2048).build()) {
                dev.cortado.optim.Optimizer opt = dev.cortado.optim.Adam.adamW().lr(0.05).weightDecay(0.01)
                        .build(replica.parameters());
                for (int step = 0; step < 2; step++) {
                    step(ddp, opt, reference, refOpt, rank, global, step);
                }
                ddp.saveCheckpoint(ckpt, opt, Map.of("step", "2"));
                opt.close();
            }
            try (Sequential fresh = model(200 + rank);
                 DistributedDataParallel ddp = DistributedDataParallel.builder(fresh, group).bucketCapBytes(2048).build()) {
                dev.cortado.optim.Optimizer opt = dev.cortado.optim.Adam.adamW().lr(0.05).weightDecay(0.01)
                        .build(fresh.parameters());
                Map<String, String> info = ddp.resume(ckpt, opt);
                CollectivesWorker.check("2".equals(info.get("step")), "the checkpoint's step: " + info);
                assertSame(fresh, reference, 2e-5, "right after resume");
                for (int step = 2; step < 4; step++) {
                    step(ddp, opt, reference, refOpt, rank, global, step);
                }
                assertSame(fresh, reference, 2e-5, "2 steps after resume");
                checks += 2;
                // rank 0 resumes from the step-2 file, the others from a later one: all fail
                java.nio.file.Path later = dir.resolve("ddp-later.safetensors");
                ddp.saveCheckpoint(later, opt, Map.of("step", "4"));
                try {
                    ddp.resume(rank == 0 ? ckpt : later, opt);
                    CollectivesWorker.check(false, "ranks that loaded different checkpoints were not noticed");
                } catch (IllegalStateException e) {
                    CollectivesWorker.check(e.getMessage().contains("step 2 to 4")
                            && e.getMessage().contains("every rank must read the same file"), e.getMessage());
                }
                checks++;
                opt.close();
            }
            refOpt.close();
        }
        return checks;
    }

    private static void step(DistributedDataParallel ddp, dev.cortado.optim.Optimizer opt, Sequential reference,
                             dev.cortado.optim.Optimizer refOpt, int rank, int global, int step) {
        opt.zeroGrad();
        refOpt.zeroGrad();
        try (Tensor l = loss(ddp.module(), step, rank * PER_RANK, (rank + 1) * PER_RANK)) {
            ddp.backward(l);
        }
        try (Tensor l = loss(reference, step, 0, global)) {
            l.backward();
        }
        opt.step();
        refOpt.step();
    }

    /** Two children, forward through the first only. */
    static final class TwoParts extends Module {
        private final Module used;

        TwoParts(Module used, Module unused) {
            this.used = registerModule("used", used);
            registerModule("unused", unused);
        }

        @Override
        public Tensor forward(Tensor x) {
            return used.apply(x);
        }
    }

    static void assertSame(Module a, Module b, double tolerance, String when) {
        compare(a.namedParameters(), b.namedParameters(), tolerance, when, false);
    }

    static void assertGradientsSame(Module a, Module b, String when) {
        compare(a.namedParameters(), b.namedParameters(), 2e-6, when, true);
    }

    private static void compare(Map<String, Tensor> a, Map<String, Tensor> b, double tolerance, String when, boolean grads) {
        for (String name : a.keySet()) {
            Tensor x = grads ? a.get(name).grad() : a.get(name);
            Tensor y = grads ? b.get(name).grad() : b.get(name);
            float[] u = x.toFloatArray();
            float[] v = y.toFloatArray();
            for (int i = 0; i < u.length; i++) {
                double scale = Math.max(1, Math.abs(v[i]));
                CollectivesWorker.check(Math.abs(u[i] - v[i]) <= tolerance * scale, (grads ? "gradient " : "parameter ")
                        + name + "[" + i + "] " + when + ": " + u[i] + " vs reference " + v[i]);
            }
        }
    }
}
