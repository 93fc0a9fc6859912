package dev.cortado.distributed;

import org.bytedeco.javacpp.BytePointer;
import org.bytedeco.javacpp.Loader;
import org.bytedeco.javacpp.annotation.Cast;
import org.bytedeco.javacpp.annotation.Platform;
import org.bytedeco.javacpp.annotation.Properties;

/**
 * JavaCPP binding of libcortado_comm.so ({@code native/comm/comm.h}): collectives over MPI. Written
 * by hand because the generated bindings cover the kernel families only. Buffers cross as raw
 * addresses; the calls are made by {@link MpiProcessGroup}'s communication thread only.
 */
@Properties(value = @Platform(compiler = "cpp17", include = {"cortado/common.h", "comm.h"}, link = "cortado_comm"))
final class NativeComm {
    static {
        Loader.load();
    }

    private NativeComm() {
    }

    static native int ct_comm_built_with_mpi();
    static native int ct_comm_init(int[] rank, int[] size);
    static native int ct_comm_library_version(@Cast("char*") byte[] out, int capacity);
    static native int ct_comm_finalize();
    static native int ct_comm_abort(int code);
    static native int ct_comm_barrier();
    static native int ct_comm_all_reduce(int dtype, int op, @Cast("void*") long buffer, @Cast("int64_t") long count);
    static native int ct_comm_broadcast(int dtype, @Cast("void*") long buffer, @Cast("int64_t") long count, int root);
    static native int ct_comm_all_gather(int dtype, @Cast("const void*") long in, @Cast("void*") long out, @Cast("int64_t") long count);
    static native int ct_comm_reduce_scatter(int dtype, int op, @Cast("const void*") long in, @Cast("void*") long out, @Cast("int64_t") long count);
    static native @Cast("const char*") BytePointer ct_comm_last_error();

    /** Throws a {@link CommunicationException} naming {@code context} unless {@code status} is 0. */
    static void check(int status, String context) {
        if (status != 0) {
            BytePointer message = ct_comm_last_error();
            throw new CommunicationException(context + ": " + (message == null ? "status " + status : message.getString()));
        }
    }
}
