package dev.cortado.ops;

import static dev.cortado.tensor.DeviceType.CPU;
import static dev.cortado.tensor.DeviceType.CUDA;

import dev.cortado.backend.cpu.CpuBackend;
import dev.cortado.backend.cpu.NativeCpu;
import dev.cortado.backend.cuda.CudaBackend;
import dev.cortado.backend.cuda.NativeCuda;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Shape;
import dev.cortado.tensor.Tensor;
import java.util.Arrays;

/**
 * Gather (ONNX Gather; embedding lookup is gather along axis 0) and concat. Kernels:
 * {@code native/cpu/index.cpp}, {@code native/cuda/index.cu}; concat writes each input into a
 * slice of its output with the strided copy kernel.
 */
public final class Indexing {
    private Indexing() {
    }

    /** The axis an op works along. */
    public record Axis(int axis) {
    }

    public static final Op<Axis> GATHER_OP = Op.<Axis>declare("gather")
            .inputs("data", "indices")
            .shape((op, a, in) -> {
                Tensor data = in[0];
                Tensor idx = in[1];
                op.requireDType("indices", idx, DType.INT32, DType.INT64);
                if (data.rank() == 0) {
                    throw op.error("data must have at least one dimension, got " + data.describe());
                }
                if (data.dtype().isPacked()) {
                    throw op.error("packed int4 data must be unpacked first: " + data.describe());
                }
                int axis = normalizeAxis(op, a.axis(), data.rank(), data);
                long[] d = data.dims();
                long[] i = idx.dims();
                long[] out = new long[d.length - 1 + i.length];
                System.arraycopy(d, 0, out, 0, axis);
                System.arraycopy(i, 0, out, axis, i.length);
                System.arraycopy(d, axis + 1, out, axis + i.length, d.length - axis - 1);
                return Op.one(Shape.of(out), data.dtype());
            })
            .kernel(CPU, (a, in, out) -> gatherKernel(a, in[0], in[1], out[0], false))
            .kernel(CUDA, (a, in, out) -> gatherKernel(a, in[0], in[1], out[0], true))
            .register();

    public static final Op<Axis> CONCAT_OP = Op.<Axis>declare("concat")
            .inputs("tensors").variadic()
            .shape((op, a, in) -> {
                Tensor first = in[0];
                if (first.rank() == 0) {
                    throw op.error("cannot concatenate 0-dim tensors");
                }
                int axis = normalizeAxis(op, a.axis(), first.rank(), first);
                long[] out = first.dims();
                DType type = first.dtype();
                for (int k = 1; k < in.length; k++) {
                    Tensor t = in[k];
                    if (t.rank() != first.rank()) {
                        throw op.error("tensor " + k + " " + t.describe() + " has rank " + t.rank() + ", tensor 0 "
                                + first.describe() + " has rank " + first.rank());
                    }
                    for (int d = 0; d < out.length; d++) {
                        if (d != axis && t.size(d) != out[d]) {
                            throw op.error("tensor " + k + " " + t.describe() + " differs from tensor 0 " + first.describe()
                                    + " in dimension " + d + " (concatenating along " + axis + ")");
                        }
                    }
                    out[axis] += t.size(axis);
                    type = DType.promote(type, t.dtype());
                }
                return Op.one(Shape.of(out), type);
            })
            .kernel(CPU, Indexing::concatKernel)
            .kernel(CUDA, Indexing::concatKernel)
            .register();

    // ------------------------------------------------------------------ eager entry points
    /** {@code out[..., j..., ...] = data[..., indices[j...], ...]} along {@code axis}; negative indices count from the end. */
    public static Tensor gather(Tensor data, Tensor indices, int axis) {
        return GATHER_OP.call(new Axis(axis), data, indices);
    }

    /** Rows of {@code weight} [num_embeddings, dim] selected by {@code indices} (any shape): [..., dim]. */
    public static Tensor embedding(Tensor weight, Tensor indices) {
        if (weight.rank() != 2) {
            throw new IllegalArgumentException("embedding: weight must be [num_embeddings, dim], got " + weight.describe());
        }
        return GATHER_OP.call(new Axis(0), weight, indices);
    }

    /** Concatenates along {@code axis}; dtypes are promoted. */
    public static Tensor concat(int axis, Tensor... tensors) {
        if (tensors.length == 0) {
            throw new IllegalArgumentException("concat: needs at least one tensor");
        }
        return CONCAT_OP.call(new Axis(axis), tensors);
    }

    // ------------------------------------------------------------------ kernels
    private static int normalizeAxis(Op<?> op, int axis, int rank, Tensor t) {
        try {
            return Shape.normalize(axis, rank);
        } catch (IndexOutOfBoundsException e) {
            throw op.error("axis " + axis + " is out of range for " + t.describe());
        }
    }

    private static void gatherKernel(Axis a, Tensor data, Tensor idx, Tensor out, boolean cuda) {
        int axis = Shape.normalize(a.axis(), data.rank());
        long[] d = data.dims();
        long outer = 1;
        long inner = 1;
        for (int k = 0; k < axis; k++) {
            outer *= d[k];
        }
        for (int k = axis + 1; k < d.length; k++) {
            inner *= d[k];
        }
        if (idx.numel() > 0 && d[axis] == 0) {
            throw new IndexOutOfBoundsException("gather: axis " + axis + " of " + data.describe() + " is empty, "
                    + "so no index is valid");
        }
        if (out.numel() == 0) {
            return;
        }
        try (Tensor dc = data.contiguous(); Tensor ic = idx.contiguous()) {
            int status;
            if (cuda) {
                CudaBackend be = CudaBackend.instance();
                be.activate(out.device().index());
                status = NativeCuda.ct_cuda_gather(data.dtype().code(), idx.dtype().code(), outer, d[axis], inner,
                        dc.dataAddress(), idx.numel(), ic.dataAddress(), out.dataAddress(), be.currentStream());
            } else {
                status = NativeCpu.ct_cpu_gather(data.dtype().code(), idx.dtype().code(), outer, d[axis], inner,
                        dc.dataAddress(), idx.numel(), ic.dataAddress(), out.dataAddress());
            }
            if (status != 0) {
                String ctx = "gather(" + data.describe() + ", indices " + idx.describe() + ", axis " + a.axis() + ")";
                throw cuda ? CudaBackend.failure(status, ctx) : CpuBackend.failure(status, ctx);
            }
        }
    }

    private static void concatKernel(Axis a, Tensor[] in, Tensor[] outs) {
        Tensor out = outs[0];
        int axis = Shape.normalize(a.axis(), out.rank());
        long at = 0;
        for (Tensor t : in) {
            long len = t.size(axis);
            if (len > 0) {
                try (Tensor slot = out.narrow(axis, at, len)) {
                    slot.copyFrom(t);
                }
            }
            at += len;
        }
        if (at != out.size(axis)) {
            throw new IllegalStateException("concat wrote " + at + " of " + Arrays.toString(out.dims()));
        }
    }
}
