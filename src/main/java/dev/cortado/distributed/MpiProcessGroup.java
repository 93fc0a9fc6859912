package dev.cortado.distributed;

import dev.cortado.tensor.DType;
import dev.cortado.tensor.Tensor;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * The MPI process group: MPI_COMM_WORLD, driven from one communication thread. MPI is initialised
 * (MPI_THREAD_SERIALIZED) and finalised on that thread, and every collective runs there in call
 * order, so the calling thread only validates arguments and enqueues: a collective overlaps
 * whatever the caller computes next. Host tensors only (contiguous, CPU).
 */
final class MpiProcessGroup implements ProcessGroup {
    private static final AtomicBoolean STARTED = new AtomicBoolean();

    private final CommThread comm;
    private final int rank;
    private final int worldSize;

    static boolean available() {
        try {
            return NativeComm.ct_comm_built_with_mpi() == 1;
        } catch (LinkageError e) {  // no libmpi on this machine: the library does not load
            return false;
        }
    }

    static MpiProcessGroup open(Options options) {
        if (!available()) {
            throw new CommunicationException("ProcessGroup.mpi: this build of Cortado has no MPI "
                    + "(libcortado_comm.so was built without an MPI library; install libopenmpi-dev and rebuild)");
        }
        if (!STARTED.compareAndSet(false, true)) {
            throw new IllegalStateException("ProcessGroup.mpi: MPI starts once per process and this process already "
                    + "opened its group; share that group");
        }
        return new MpiProcessGroup(options);
    }

    private MpiProcessGroup(Options options) {
        this.comm = new CommThread("cortado-mpi", options);
        int[] r = new int[1];
        int[] s = new int[1];
        comm.runNow("ProcessGroup.mpi: MPI initialisation",
                () -> NativeComm.check(NativeComm.ct_comm_init(r, s), "ProcessGroup.mpi: MPI_Init_thread"));
        this.rank = r[0];
        this.worldSize = s[0];
    }

    @Override
    public int rank() {
        return rank;
    }

    @Override
    public int worldSize() {
        return worldSize;
    }

    /** The MPI library's version string, e.g. {@code Open MPI v4.1.4, ...}. */
    String libraryVersion() {
        byte[] text = new byte[8192];
        comm.runNow("MPI_Get_library_version",
                () -> NativeComm.check(NativeComm.ct_comm_library_version(text, text.length), "MPI_Get_library_version"));
        int n = 0;
        while (n < text.length && text[n] != 0) {
            n++;
        }
        return new String(text, 0, n, StandardCharsets.UTF_8).trim();
    }

    @Override
    public Work allReduce(Tensor tensor, ReduceOp op) {
        String what = describe("all_reduce(" + op.name().toLowerCase() + ")", tensor);
        checkHost(what, "tensor", tensor);
        checkReducible(what, tensor.dtype(), op);
        long address = tensor.dataAddress();
        long count = tensor.numel();
        int dtype = tensor.dtype().code();
        return submit(what, () -> NativeComm.ct_comm_all_reduce(dtype, op.code, address, count), tensor);
    }

    @Override
    public Work broadcast(Tensor tensor, int root) {
        String what = describe("broadcast(root " + root + ")", tensor);
        checkHost(what, "tensor", tensor);
        if (root < 0 || root >= worldSize) {
            throw new IllegalArgumentException(what + ": root " + root + " is not a rank of a world of " + worldSize);
        }
        long address = tensor.dataAddress();
        long count = tensor.numel();
        int dtype = tensor.dtype().code();
        return submit(what, () -> NativeComm.ct_comm_broadcast(dtype, address, count, root), tensor);
    }

    @Override
    public Work allGather(Tensor out, Tensor in) {
        String what = describe("all_gather", in) + " into " + out.describe();
        checkHost(what, "in", in);
        checkHost(what, "out", out);
        CommThread.checkParts(what, out, in, "out", worldSize);
        long from = in.dataAddress();
        long to = out.dataAddress();
        long count = in.numel();
        int dtype = in.dtype().code();
        return submit(what, () -> NativeComm.ct_comm_all_gather(dtype, from, to, count), in, out);
    }

    @Override
    public Work reduceScatter(Tensor out, Tensor in, ReduceOp op) {
        String what = describe("reduce_scatter(" + op.name().toLowerCase() + ")", in) + " into " + out.describe();
        checkHost(what, "in", in);
        checkHost(what, "out", out);
        checkReducible(what, in.dtype(), op);
        CommThread.checkParts(what, in, out, "in", worldSize);
        long from = in.dataAddress();
        long to = out.dataAddress();
        long count = out.numel();
        int dtype = in.dtype().code();
        return submit(what, () -> NativeComm.ct_comm_reduce_scatter(dtype, op.code, from, to, count), in, out);
    }

    @Override
    public Work barrier() {
        return submit("barrier at rank " + rank + " of " + worldSize, NativeComm::ct_comm_barrier);
    }

    @Override
    public void abort(int exitCode) {
        // Not through the communication thread: it may be the one blocked in a collective.
        NativeComm.ct_comm_abort(exitCode);
    }

    @Override
    public void close() {
        comm.close("ProcessGroup.close: MPI_Finalize at rank " + rank,
                () -> NativeComm.check(NativeComm.ct_comm_finalize(), "ProcessGroup.close: MPI_Finalize"));
    }

    @Override
    public String toString() {
        return "ProcessGroup(mpi, rank " + rank + " of " + worldSize + ")";
    }

    private interface Call {
        int run();
    }

    private Work submit(String what, Call call, Tensor... operands) {
        return comm.submit(what, () -> NativeComm.check(call.run(), what), operands);
    }

    private String describe(String op, Tensor t) {
        return CommThread.describe(op, t, rank, worldSize);
    }

    private static void checkHost(String what, String argument, Tensor t) {
        CommThread.checkOperand(what, argument, t);
        if (!t.device().isCpu()) {
            throw new IllegalArgumentException(what + ": " + argument + " is on " + t.device()
                    + "; the MPI group communicates host tensors (use the NCCL group for device tensors)");
        }
        if (t.dtype() == DType.INT4 || t.dtype().byteSize() == 0) {
            throw new IllegalArgumentException(what + ": " + argument + " has dtype " + t.dtype()
                    + ", which is not communicated element-wise");
        }
    }

    private static void checkReducible(String what, DType dtype, ReduceOp op) {
        boolean arithmetic = switch (dtype) {
            case FLOAT32, FLOAT64, INT32, INT64, INT8, UINT8 -> true;
            default -> false;
        };
        if (!arithmetic) {
            throw new IllegalArgumentException(what + ": MPI cannot reduce " + dtype + "; reduce a float32 copy");
        }
        if (op == ReduceOp.AVG && dtype != DType.FLOAT32 && dtype != DType.FLOAT64) {
            throw new IllegalArgumentException(what + ": avg needs float32 or float64, not " + dtype);
        }
    }

}
