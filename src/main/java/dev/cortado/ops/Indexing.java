package dev.cortado.ops;

import dev.cortado.tensor.DType;
import dev.cortado.tensor.Shape;
import dev.cortado.tensor.Tensor;
import java.util.Arrays;

/**
 * Gather (ONNX Gather; embedding lookup is gather along axis 0), its backward index_add
 * (scatter-add), and concat. Kernels:
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
            .kernels((a, in, out) -> gatherKernel(a, in[0], in[1], out[0]))
            .backward(Op.Saves.INPUTS, (a, saved, g) -> {
                if (g[0] == null || !saved.needsGradient(0)) {
                    return new Tensor[] {null, null};
                }
                Shape ds = saved.inputShape(0);
                int axis = Shape.normalize(a.axis(), ds.rank());
                return new Tensor[] {Indexing.INDEX_ADD_OP.call(new IndexAddAttrs(axis, ds.size(axis)), g[0],
                        saved.input(1)), null};
            })
            .register();

    /**
     * {@code index_add} (scatter-add): {@code out = base; out[..., idx[j...], ...] += source[..., j..., ...]}
     * along {@code axis} — the backward of gather and embedding. {@code source} has gather's output
     * shape for indices of this shape ({@code out.dims[:axis] + indices.dims + out.dims[axis+1:]}).
     * base is optional (zeros when absent; then {@code size} gives the output's length along axis).
     */
    public record IndexAddAttrs(int axis, long size) {
    }

    public static final Op<IndexAddAttrs> INDEX_ADD_OP = Op.<IndexAddAttrs>declare("index_add")
            .inputs("source", "indices", "base").required(2)
            .shape((op, a, in) -> indexAddShape(op, a, in))
            .kernels((a, in, out) -> indexAddKernel(a, in, out[0]))
            .backward(Op.Saves.INPUTS, (a, saved, g) -> {
                Tensor[] res = new Tensor[saved.inputCount()];
                if (g[0] == null) {
                    return res;
                }
                if (saved.needsGradient(0)) { // d source = gather of the output gradient
                    res[0] = Indexing.GATHER_OP.call(new Axis(a.axis()), g[0], saved.input(1));
                }
                if (res.length > 2 && saved.needsGradient(2)) {
                    res[2] = g[0].copy();
                }
                return res;
            })
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
                    if (t == null) {
                        throw op.error("tensor " + k + " is null (every tensor concatenated must be given)");
                    }
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
            .kernels(Indexing::concatKernel)
            .backward(Op.Saves.NOTHING, (a, saved, g) -> {
                Tensor[] res = new Tensor[saved.inputCount()];
                if (g[0] == null) {
                    return res;
                }
                int axis = Shape.normalize(a.axis(), g[0].rank());
                long at = 0;
                for (int i = 0; i < res.length; i++) {
                    long len = saved.inputShape(i).size(axis);
                    if (saved.needsGradient(i)) { // a copy of the slice: the gradient owns its memory
                        try (Tensor slice = g[0].narrow(axis, at, len)) {
                            res[i] = slice.copy();
                        }
                    }
                    at += len;
                }
                return res;
            })
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

    /**
     * {@code base} with {@code source} rows added at {@code indices} along {@code axis} (PyTorch's
     * {@code base.index_add(axis, indices, source)}, with any index shape as in gather); a new tensor.
     */
    public static Tensor indexAdd(Tensor base, int axis, Tensor indices, Tensor source) {
        return INDEX_ADD_OP.call(new IndexAddAttrs(axis, -1), source, indices, base);
    }

    /** Like {@link #indexAdd(Tensor, int, Tensor, Tensor)} onto zeros of length {@code size} along axis. */
    public static Tensor indexAdd(long size, int axis, Tensor indices, Tensor source) {
        return INDEX_ADD_OP.call(new IndexAddAttrs(axis, size), source, indices);
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

    private static void gatherKernel(Axis a, Tensor data, Tensor idx, Tensor out) {
        int axis = Shape.normalize(a.axis(), data.rank());
        long[] d = data.dims();
        long outer = data.shape().sizeBefore(axis);
        long inner = data.shape().sizeAfter(axis);
        if (idx.numel() > 0 && d[axis] == 0) {
            throw new IndexOutOfBoundsException("gather: axis " + axis + " of " + data.describe() + " is empty, "
                    + "so no index is valid");
        }
        if (out.numel() == 0) {
            return;
        }
        try (Tensor dc = data.contiguous(); Tensor ic = idx.contiguous()) {
            Launch l = Launch.on(out);
            int status;
            status = l.kernels.gather(data.dtype().code(), idx.dtype().code(), outer, d[axis], inner,
                    dc.dataAddress(), idx.numel(), ic.dataAddress(), out.dataAddress(), l.stream);
            if (status != 0) {
                String ctx = "gather(" + data.describe() + ", indices " + idx.describe() + ", axis " + a.axis() + ")";
                throw l.failure(status, ctx);
            }
        }
    }

    private static TensorSpec[] indexAddShape(Op<IndexAddAttrs> op, IndexAddAttrs a, Tensor[] in) {
        Tensor src = in[0];
        Tensor idx = in[1];
        Tensor base = in.length > 2 ? in[2] : null;
        op.requireDType("indices", idx, DType.INT32, DType.INT64);
        op.requireDType("source", src, DType.FLOAT32, DType.FLOAT64, DType.FLOAT16, DType.BFLOAT16);
        int rank = src.rank() - idx.rank() + 1;
        if (rank < 1) {
            throw op.error("source " + src.describe() + " has fewer dimensions than indices " + idx.describe());
        }
        int axis;
        try {
            axis = Shape.normalize(a.axis(), rank);
        } catch (IndexOutOfBoundsException e) {
            throw op.error("axis " + a.axis() + " is out of range for an output of rank " + rank + " (source "
                    + src.describe() + ", indices " + idx.describe() + ")");
        }
        long[] s = src.dims();
        if (!Arrays.equals(Arrays.copyOfRange(s, axis, axis + idx.rank()), idx.dims())) {
            throw op.error("source " + src.describe() + " must hold the indices' shape " + idx.shape()
                    + " at dimension " + axis);
        }
        long size = a.size();
        if (base != null) {
            if (base.rank() != rank) {
                throw op.error("base " + base.describe() + " must have rank " + rank + " (source " + src.describe()
                        + ", indices " + idx.describe() + ")");
            }
            if (size >= 0 && size != base.size(axis)) {
                throw op.error("size " + size + " differs from base " + base.describe() + " along axis " + axis);
            }
            size = base.size(axis);
            if (base.dtype() != src.dtype()) {
                throw op.error("base " + base.describe() + " and source " + src.describe() + " differ in dtype");
            }
        } else if (size < 0) {
            throw op.error("needs a base tensor or a non-negative size along axis " + axis);
        }
        long[] out = new long[rank];
        System.arraycopy(s, 0, out, 0, axis);
        out[axis] = size;
        System.arraycopy(s, axis + idx.rank(), out, axis + 1, rank - axis - 1);
        if (base != null && !Arrays.equals(out, base.dims())) {
            throw op.error("base " + base.describe() + " does not match source " + src.describe() + " and indices "
                    + idx.describe() + " along axis " + axis + ": expected " + Arrays.toString(out));
        }
        return Op.one(Shape.of(out), src.dtype());
    }

    private static void indexAddKernel(IndexAddAttrs a, Tensor[] in, Tensor out) {
        Tensor src = in[0];
        Tensor idx = in[1];
        Tensor base = in.length > 2 ? in[2] : null;
        int axis = Shape.normalize(a.axis(), out.rank());
        long[] d = out.dims();
        long outer = out.shape().sizeBefore(axis);
        long inner = out.shape().sizeAfter(axis);
        if (idx.numel() > 0 && d[axis] == 0) {
            throw new IndexOutOfBoundsException("index_add: axis " + axis + " of the output " + out.describe()
                    + " is empty, so no index is valid");
        }
        if (base != null) {
            out.copyFrom(base);
        } else {
            out.fillWith(0);
        }
        try (Tensor sc = src.contiguous(); Tensor ic = idx.contiguous()) {
            Launch l = Launch.on(out);
            int status;
            status = l.kernels.indexAdd(out.dtype().code(), idx.dtype().code(), outer, d[axis], inner,
                    idx.numel(), ic.dataAddress(), sc.dataAddress(), out.dataAddress(), l.stream);
            if (status != 0) {
                String ctx = "index_add(source " + src.describe() + ", indices " + idx.describe() + ", axis " + a.axis()
                        + ", out " + out.describe() + ")";
                throw l.failure(status, ctx);
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
