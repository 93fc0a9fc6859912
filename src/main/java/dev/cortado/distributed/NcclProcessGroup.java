package dev.cortado.distributed;

import dev.cortado.backend.cuda.CudaBackend;
import dev.cortado.backend.cuda.CudaEvent;
import dev.cortado.backend.cuda.CudaStream;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;
import java.util.concurrent.CompletableFuture;
import org.bytedeco.cuda.cudart.CUstream_st;
import org.bytedeco.cuda.global.nccl;
import org.bytedeco.cuda.nccl.ncclComm;
import org.bytedeco.cuda.nccl.ncclUniqueId;
import org.bytedeco.javacpp.Loader;
import org.bytedeco.javacpp.Pointer;

/**
 * The NCCL process group: one GPU per process, collectives on device tensors through NCCL (the
 * JavaCPP CUDA presets' {@code org.bytedeco.cuda.global.nccl}, over the system's libnccl).
 *
 * <p>Ordering: a collective is enqueued on the group's own communication stream after an event
 * recorded on the caller's current stream, so it sees every kernel the caller launched before it;
 * the caller's compute stream goes on meanwhile. The communication thread waits for the
 * collective's completion event, which completes the {@link Work}; {@link Work#await()} then
 * orders the caller after it. A collective that does not complete within the timeout fails its
 * Work; {@link #abort} calls {@code ncclCommAbort}, which NCCL provides for hung collectives.
 *
 * <p>The unique id that joins the processes into one communicator is made by rank 0 and broadcast
 * over a bootstrap group (the MPI world); a world of one needs none.
 */
final class NcclProcessGroup implements ProcessGroup {
    private static final int UNIQUE_ID_BYTES = 128;   // NCCL_UNIQUE_ID_BYTES

    private final Device device;
    private final int rank;
    private final int worldSize;
    private final CommThread thread;
    private final ncclComm comm = new ncclComm();
    private final ProcessGroup.Options options;
    private CudaStream stream;

    static NcclProcessGroup open(Device device, ProcessGroup bootstrap, Options options) {
        if (!device.isCuda()) {
            throw new IllegalArgumentException("ProcessGroup.nccl: " + device + " is not a CUDA device");
        }
        CudaBackend.instance().allocator(device);   // throws naming the device when it cannot be used
        try {
            Loader.load(nccl.class);
        } catch (LinkageError e) {
            throw new CommunicationException("ProcessGroup.nccl: NCCL could not be loaded (is libnccl.so.2 installed?): " + e, e);
        }
        return new NcclProcessGroup(device, bootstrap, options);
    }

    private NcclProcessGroup(Device device, ProcessGroup bootstrap, Options options) {
        this.device = device;
        this.options = options;
        this.rank = bootstrap == null ? 0 : bootstrap.rank();
        this.worldSize = bootstrap == null ? 1 : bootstrap.worldSize();
        ncclUniqueId id = new ncclUniqueId();
        byte[] bytes = new byte[UNIQUE_ID_BYTES];
        if (rank == 0) {
            check(nccl.ncclGetUniqueId(id), "ncclGetUniqueId");
            for (int i = 0; i < UNIQUE_ID_BYTES; i++) {
                bytes[i] = id.internal(i);
            }
        }
        if (bootstrap != null) {
            try (Tensor shared = Tensor.of(bytes, DType.UINT8, UNIQUE_ID_BYTES)) {
                bootstrap.broadcast(shared, 0).await();
                bytes = shared.toByteArray();
            }
            for (int i = 0; i < UNIQUE_ID_BYTES; i++) {
                id.internal(i, bytes[i]);
            }
        }
        this.thread = new CommThread("cortado-nccl-" + device, options);
        thread.runNow("ProcessGroup.nccl: communicator of rank " + rank + " of " + worldSize + " on " + device, () -> {
            CudaBackend.instance().activate(device.index());
            stream = CudaStream.create(device);
            check(nccl.ncclCommInitRank(comm, worldSize, id, rank), "ncclCommInitRank(rank " + rank + " of " + worldSize + ")");
        });
    }

    @Override
    public int rank() {
        return rank;
    }

    @Override
    public int worldSize() {
        return worldSize;
    }

    private interface Collective {
        int run(CUstream_st stream);
    }

    @Override
    public Work allReduce(Tensor tensor, ReduceOp op) {
        String what = describe("all_reduce(" + op.name().toLowerCase() + ")", tensor);
        checkDevice(what, "tensor", tensor);
        int type = ncclType(what, tensor.dtype());
        Pointer p = at(tensor.dataAddress());
        long count = tensor.numel();
        return submit(what, s -> nccl.ncclAllReduce(p, p, count, type, ncclOp(op), comm, s), tensor);
    }

    @Override
    public Work broadcast(Tensor tensor, int root) {
        String what = describe("broadcast(root " + root + ")", tensor);
        checkDevice(what, "tensor", tensor);
        if (root < 0 || root >= worldSize) {
            throw new IllegalArgumentException(what + ": root " + root + " is not a rank of a world of " + worldSize);
        }
        int type = ncclType(what, tensor.dtype());
        Pointer p = at(tensor.dataAddress());
        long count = tensor.numel();
        return submit(what, s -> nccl.ncclBroadcast(p, p, count, type, root, comm, s), tensor);
    }

    @Override
    public Work allGather(Tensor out, Tensor in) {
        String what = describe("all_gather", in) + " into " + out.describe();
        checkDevice(what, "in", in);
        checkDevice(what, "out", out);
        CommThread.checkParts(what, out, in, "out", worldSize);
        int type = ncclType(what, in.dtype());
        Pointer from = at(in.dataAddress());
        Pointer to = at(out.dataAddress());
        long count = in.numel();
        return submit(what, s -> nccl.ncclAllGather(from, to, count, type, comm, s), in, out);
    }

    @Override
    public Work reduceScatter(Tensor out, Tensor in, ReduceOp op) {
        String what = describe("reduce_scatter(" + op.name().toLowerCase() + ")", in) + " into " + out.describe();
        checkDevice(what, "in", in);
        checkDevice(what, "out", out);
        CommThread.checkParts(what, in, out, "in", worldSize);
        int type = ncclType(what, in.dtype());
        Pointer from = at(in.dataAddress());
        Pointer to = at(out.dataAddress());
        long count = out.numel();
        return submit(what, s -> nccl.ncclReduceScatter(from, to, count, type, ncclOp(op), comm, s), in, out);
    }

    /** NCCL has no barrier: an all-reduce of one value stands for it, as in PyTorch. */
    @Override
    public Work barrier() {
        Tensor one = Tensor.zeros(DType.FLOAT32, device, 1);
        Work w = allReduce(one, ReduceOp.SUM);
        CompletableFuture<Void> done = new CompletableFuture<>();
        CompletableFuture.runAsync(() -> {
            try {
                w.await();
                done.complete(null);
            } catch (RuntimeException e) {
                done.completeExceptionally(e);
            } finally {
                one.close();
            }
        });
        return new Work("barrier at rank " + rank + " of " + worldSize + " (NCCL)", done, options.timeout());
    }

    @Override
    public void abort(int exitCode) {
        nccl.ncclCommAbort(comm);
        System.exit(exitCode);
    }

    @Override
    public void close() {
        thread.close("ProcessGroup.close (NCCL) at rank " + rank, () -> {
            check(nccl.ncclCommDestroy(comm), "ncclCommDestroy");
            stream.close();
        });
    }

    @Override
    public String toString() {
        return "ProcessGroup(nccl, rank " + rank + " of " + worldSize + " on " + device + ")";
    }

    private Work submit(String what, Collective call, Tensor... operands) {
        // the collective must see what the caller's stream has computed so far
        CudaBackend.instance().activate(device.index());
        CudaEvent ready = CudaEvent.create();
        ready.record();
        try {
            return thread.submit(what, () -> {
                try (ready; CudaEvent finished = CudaEvent.create()) {
                    stream.waitFor(ready);
                    check(call.run(new CUstream_st(at(stream.handle()))), what);
                    finished.record(stream);
                    finished.synchronize();
                }
            }, operands);
        } catch (RuntimeException e) {
            ready.close();   // not queued: nobody else will close it
            throw e;
        }
    }

    private String describe(String op, Tensor t) {
        return CommThread.describe(op, t, rank, worldSize) + " (NCCL)";
    }

    private void checkDevice(String what, String argument, Tensor t) {
        CommThread.checkOperand(what, argument, t);
        if (!t.device().equals(device)) {
            throw new IllegalArgumentException(what + ": " + argument + " is on " + t.device() + ", the group's device is "
                    + device);
        }
    }

    private static int ncclType(String what, DType dtype) {
        return switch (dtype) {
            case FLOAT32 -> nccl.ncclFloat32;
            case FLOAT64 -> nccl.ncclFloat64;
            case FLOAT16 -> nccl.ncclFloat16;
            case BFLOAT16 -> nccl.ncclBfloat16;
            case INT8 -> nccl.ncclInt8;
            case UINT8, BOOL -> nccl.ncclUint8;
            case INT32 -> nccl.ncclInt32;
            case INT64 -> nccl.ncclInt64;
            default -> throw new IllegalArgumentException(what + ": NCCL cannot communicate " + dtype);
        };
    }

    private static int ncclOp(ReduceOp op) {
        return switch (op) {
            case SUM -> nccl.ncclSum;
            case AVG -> nccl.ncclAvg;
            case MAX -> nccl.ncclMax;
            case MIN -> nccl.ncclMin;
        };
    }

    private static void check(int result, String what) {
        if (result != nccl.ncclSuccess) {
            throw new CommunicationException(what + " failed: " + nccl.ncclGetErrorString(result).getString()
                    + " (ncclResult " + result + ")");
        }
    }

    /** A pointer object over device memory it does not own. */
    private static Pointer at(long address) {
        return new Pointer() {
            {
                this.address = address;
            }
        };
    }
}
