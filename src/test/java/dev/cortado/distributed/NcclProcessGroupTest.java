package dev.cortado.distributed;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.cortado.backend.cuda.CudaBackend;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * The NCCL group on a GPU: a world of one (every collective is then the identity or a copy, which
 * still runs NCCL's kernels on the communication stream after the caller's work), and with two or
 * more GPUs an {@code mpirun} job of one process per GPU running {@link CollectivesWorker}'s
 * collectives on device tensors. Needs libnccl; skipped without a GPU.
 */
@Tag("gpu")
class NcclProcessGroupTest {

    static boolean ncclLoads() {
        try {
            org.bytedeco.javacpp.Loader.load(org.bytedeco.cuda.global.nccl.class);
            return true;
        } catch (LinkageError e) {
            return false;
        }
    }

    @Test
    void aWorldOfOneRunsEveryCollective() {
        assumeTrue(CudaBackend.instance().isAvailable(), "no usable CUDA device");
        assumeTrue(ncclLoads(), "libnccl cannot be loaded on this machine");
        Device gpu = Device.cuda(0);
        float[] x = CollectivesWorker.floats(CollectivesWorker.input(0, 1, 1001));
        try (ProcessGroup group = ProcessGroup.nccl(gpu);
             Tensor host = Tensor.of(x, 1001);
             Tensor t = host.to(gpu);
             Tensor doubled = t.add(t)) {   // queued on the compute stream before the collective
            assertEquals(1, group.worldSize());
            group.allReduce(doubled, ReduceOp.SUM).await();
            float[] got = doubled.toFloatArray();
            for (int i = 0; i < x.length; i++) {
                assertEquals(2 * x[i], got[i], 0f, "the all-reduce saw the add before it");
            }
            group.allReduce(t, ReduceOp.AVG).await();
            assertArrayEquals(x, t.toFloatArray(), 0f);
            group.broadcast(t, 0).await();
            try (Tensor out = Tensor.empty(DType.FLOAT32, gpu, 1001)) {
                group.allGather(out, t).await();
                assertArrayEquals(x, out.toFloatArray(), 0f);
                group.reduceScatter(out, t, ReduceOp.MAX).await();
                assertArrayEquals(x, out.toFloatArray(), 0f);
            }
            group.barrier().await();
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> group.allReduce(host, ReduceOp.SUM));
            assertTrue(e.getMessage().contains("is on cpu"), e.getMessage());
        }
    }

    @Test
    void oneProcessPerGpuMatchesTheReference() throws Exception {
        assumeTrue(CudaBackend.instance().isAvailable() && CudaBackend.instance().deviceCount() >= 2, "fewer than 2 GPUs");
        assumeTrue(ncclLoads(), "libnccl cannot be loaded on this machine");
        int gpus = CudaBackend.instance().deviceCount();
        MpiProcessGroupTest.Result r = MpiProcessGroupTest.launch(gpus, "nccl", 180);
        assertEquals(0, r.exit(), r.output());
        for (int rank = 0; rank < gpus; rank++) {
            assertTrue(r.output().contains("rank " + rank + " of " + gpus + ": "), r.output());
        }
    }
}
