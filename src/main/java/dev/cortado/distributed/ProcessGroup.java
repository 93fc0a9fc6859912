package dev.cortado.distributed;

import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;
import java.time.Duration;
import java.util.Objects;

/**
 * The processes of one training job and the collectives between them, in place on tensors and
 * asynchronous: every call returns a {@link Work} at once, and the collectives of one group run in
 * the order they were called, on the group's communication thread, overlapping the caller's
 * compute. Every process must make the same calls in the same order with tensors of the same
 * shapes and dtypes (as with MPI and NCCL).
 *
 * <pre>{@code
 * try (var group = ProcessGroup.mpi(ProcessGroup.Options.builder().timeout(Duration.ofMinutes(2)).build())) {
 *     group.allReduce(gradient, ReduceOp.AVG).await();
 * }
 * }</pre>
 */
public interface ProcessGroup extends AutoCloseable {

    /** This process's rank, 0 .. worldSize() - 1. */
    int rank();

    /** The number of processes. */
    int worldSize();

    /** {@code tensor} (every process's) becomes {@code op} over all processes' tensors. */
    Work allReduce(Tensor tensor, ReduceOp op);

    /** Every process's {@code tensor} becomes rank {@code root}'s. */
    Work broadcast(Tensor tensor, int root);

    /**
     * {@code out} (worldSize() times the elements of {@code in}, same dtype) becomes the
     * concatenation of every process's {@code in}, in rank order.
     */
    Work allGather(Tensor out, Tensor in);

    /**
     * {@code in} holds worldSize() equal parts; {@code out} (one part) becomes {@code op} over the
     * processes of their part number rank().
     */
    Work reduceScatter(Tensor out, Tensor in, ReduceOp op);

    /** Completes when every process has reached it. */
    Work barrier();

    /**
     * Ends every process of the job at once (MPI_Abort): what to do when a peer has not answered
     * within the timeout, since a blocked collective cannot be cancelled.
     */
    void abort(int exitCode);

    /** Waits for the pending collectives (within the timeout), then leaves the group. */
    @Override
    void close();

    /**
     * The MPI world of this process (launched by {@code mpirun}, or alone as a world of one).
     * MPI starts once per process: after a group is closed, no other can be made.
     */
    static ProcessGroup mpi(Options options) {
        return MpiProcessGroup.open(options);
    }

    /** {@link #mpi(Options)} with the default options. */
    static ProcessGroup mpi() {
        return mpi(Options.builder().build());
    }

    /**
     * The NCCL group of the processes of {@code bootstrap} (normally the MPI world), one GPU each:
     * this process communicates device tensors of {@code device}. A collective: every process of
     * {@code bootstrap} calls it. NCCL comes from the system's libnccl (CUDA presets' binding).
     */
    static ProcessGroup nccl(Device device, ProcessGroup bootstrap, Options options) {
        return NcclProcessGroup.open(device, java.util.Objects.requireNonNull(bootstrap, "bootstrap"), options);
    }

    /** An NCCL group of this process alone on {@code device} (single-GPU code that runs the same way). */
    static ProcessGroup nccl(Device device) {
        return NcclProcessGroup.open(device, null, Options.builder().build());
    }

    /** Whether this build has MPI (libcortado_comm.so was built against an MPI library). */
    static boolean mpiAvailable() {
        return MpiProcessGroup.available();
    }

    /**
     * The number of processes the launcher started for this job, read from its environment
     * before any group exists: Open MPI's {@code OMPI_COMM_WORLD_SIZE}, the PMI {@code PMI_SIZE} of
     * MPICH and Slurm, or torchrun's {@code WORLD_SIZE}; 1 when started alone.
     */
    static int launchedWorldSize() {
        return environmentInt(1, "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "WORLD_SIZE");
    }

    /** This process's rank from the launcher's environment (as {@link #launchedWorldSize()}); 0 alone. */
    static int launchedRank() {
        return environmentInt(0, "OMPI_COMM_WORLD_RANK", "PMI_RANK", "RANK");
    }

    private static int environmentInt(int otherwise, String... names) {
        for (String name : names) {
            String v = System.getenv(name);
            if (v != null && !v.isBlank()) {
                try {
                    return Integer.parseInt(v.trim());
                } catch (NumberFormatException e) {
                    throw new IllegalStateException("environment variable " + name + "='" + v + "' is not a number");
                }
            }
        }
        return otherwise;
    }

    /** Options of a process group; {@link #builder()}. */
    final class Options {
        private final Duration timeout;

        private Options(Builder b) {
            this.timeout = b.timeout;
        }

        /** How long {@link Work#await()} waits for a collective before it fails. */
        public Duration timeout() {
            return timeout;
        }

        public static Builder builder() {
            return new Builder();
        }

        /** The options of a process group (timeouts), set one by one. */
        public static final class Builder {
            private Duration timeout = Duration.ofMinutes(10);

            private Builder() {
            }

            /** Default 10 minutes, as long as a slow first step may take; tests use seconds. */
            public Builder timeout(Duration timeout) {
                Objects.requireNonNull(timeout, "timeout");
                if (timeout.isNegative() || timeout.isZero()) {
                    throw new IllegalArgumentException("ProcessGroup.Options: timeout must be positive, not " + timeout);
                }
                this.timeout = timeout;
                return this;
            }

            public Options build() {
                return new Options(this);
            }
        }
    }
}
