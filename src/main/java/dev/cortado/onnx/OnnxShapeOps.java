package dev.cortado.onnx;

import static dev.cortado.onnx.OnnxBasicOps.one;

import dev.cortado.ops.Indexing;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Handlers of the ONNX shape and indexing ops (registered in {@link OnnxOps}'s table). Shapes,
 * axes, starts and the like are small int64 tensors that the handlers read on the host; data moves
 * through views ({@code reshape}, {@code expand}, {@code slice}) where it can, else through the
 * engine's gather with indices computed on the host ({@link #take}).
 */
final class OnnxShapeOps {
    private OnnxShapeOps() {
    }

    private static long[] dims(Tensor t) {
        return t.dims();
    }

    /** Shape (opset 15: start/end select a range of dimensions, negative from the end, clamped). */
    static Tensor[] shape(OnnxNode n) {
        long[] d = dims(n.required(0));
        int rank = d.length;
        long start = n.attrInt("start", 0);
        long end = n.attrInt("end", rank);
        start = Math.max(0, Math.min(rank, start < 0 ? start + rank : start));
        end = Math.max(0, Math.min(rank, end < 0 ? end + rank : end));
        long[] sel = end > start ? Arrays.copyOfRange(d, (int) start, (int) end) : new long[0];
        return one(longs(sel, n.required(0).device(), sel.length));
    }

    static Tensor[] size(OnnxNode n) {
        Tensor x = n.required(0);
        return one(Tensor.scalar(x.numel(), DType.INT64, x.device()));
    }

    private static Tensor longs(long[] v, Device device, long... dims) {
        try (Tensor host = Tensor.of(v, dims)) {
            return host.to(device);
        }
    }

    /** ConstantOfShape: attribute value (a one-element tensor, default float32 0) filled to the shape input. */
    static Tensor[] constantOfShape(OnnxNode n) {
        Tensor shape = n.required(0);
        long[] dims = shape.toLongArray();
        DType type = DType.FLOAT32;
        double value = 0;
        var proto = n.attrTensor("value");
        if (proto != null) {
            try (Tensor v = OnnxTensors.toTensor(proto, Device.CPU)) {
                type = v.dtype();
                value = v.numel() == 0 ? 0 : v.reshape(v.numel()).select(0, 0).item();
            }
        }
        return one(Tensor.full(value, type, shape.device(), dims));
    }

    /** Range: start, limit, delta scalars; max(ceil((limit - start) / delta), 0) elements of the inputs' dtype. */
    static Tensor[] range(OnnxNode n) {
        Tensor s = n.required(0);
        double start = s.item();
        double limit = n.required(1).item();
        double delta = n.required(2).item();
        if (delta == 0) {
            throw n.error("delta is 0");
        }
        long count = Math.max((long) Math.ceil((limit - start) / delta), 0);
        if (s.dtype().isFloatingPoint()) {
            double[] v = new double[(int) count];
            for (int i = 0; i < count; i++) {
                v[i] = start + i * delta;
            }
            try (Tensor host = Tensor.of(v, count)) {
                return one(host.to(s.dtype(), s.device()));
            }
        }
        long[] v = new long[(int) count];
        for (int i = 0; i < count; i++) {
            v[i] = (long) start + i * (long) delta;
        }
        try (Tensor host = Tensor.of(v, count)) {
            return one(host.to(s.dtype(), s.device()));
        }
    }

    /** Expand: numpy broadcasting of the input with the shape input (either may have the larger rank). */
    static Tensor[] expand(OnnxNode n) {
        Tensor x = n.required(0);
        long[] shape = n.required(1).toLongArray();
        long[] d = dims(x);
        int rank = Math.max(d.length, shape.length);
        long[] out = new long[rank];
        for (int i = 0; i < rank; i++) {
            long a = i - (rank - d.length) >= 0 ? d[i - (rank - d.length)] : 1;
            long b = i - (rank - shape.length) >= 0 ? shape[i - (rank - shape.length)] : 1;
            if (a != b && a != 1 && b != 1) {
                throw n.error("cannot broadcast " + x.describe() + " to " + Arrays.toString(shape));
            }
            out[i] = a == 1 ? b : a;
        }
        long[] padded = new long[rank];
        Arrays.fill(padded, 1);
        System.arraycopy(d, 0, padded, rank - d.length, d.length);
        return one(x.reshape(padded).expand(out).contiguous());
    }

    /** Axes from the attribute (before {@code inputOpset}) or input 1. */
    private static long[] axesOf(OnnxNode n, int inputOpset) {
        if (n.opset() >= inputOpset) {
            Tensor a = n.input(1);
            return a == null ? null : a.toLongArray();
        }
        return n.attrInts("axes");
    }

    static Tensor[] unsqueeze(OnnxNode n) {
        Tensor x = n.required(0);
        long[] axes = axesOf(n, 13);
        if (axes == null) {
            throw n.error("axes are required");
        }
        int rank = x.rank() + axes.length;
        boolean[] inserted = new boolean[rank];
        for (long a : axes) {
            int ax = OnnxOps.axis(n, a, rank);
            if (inserted[ax]) {
                throw n.error("axis " + a + " repeats");
            }
            inserted[ax] = true;
        }
        long[] d = dims(x);
        long[] out = new long[rank];
        for (int i = 0, k = 0; i < rank; i++) {
            out[i] = inserted[i] ? 1 : d[k++];
        }
        return one(x.reshape(out));
    }

    static Tensor[] squeeze(OnnxNode n) {
        Tensor x = n.required(0);
        long[] axes = axesOf(n, 13);
        long[] d = dims(x);
        boolean[] drop = new boolean[d.length];
        if (axes == null) {
            for (int i = 0; i < d.length; i++) {
                drop[i] = d[i] == 1;
            }
        } else {
            for (long a : axes) {
                int ax = OnnxOps.axis(n, a, d.length);
                if (d[ax] != 1) {
                    throw n.error("cannot squeeze dimension " + a + " of " + x.describe());
                }
                drop[ax] = true;
            }
        }
        List<Long> out = new ArrayList<>();
        for (int i = 0; i < d.length; i++) {
            if (!drop[i]) {
                out.add(d[i]);
            }
        }
        return one(x.reshape(out.stream().mapToLong(Long::longValue).toArray()));
    }

    /** Flatten: [prod(dims[:axis]), prod(dims[axis:])] (axis default 1, negative from the end). */
    static Tensor[] flatten(OnnxNode n) {
        Tensor x = n.required(0);
        int rank = x.rank();
        long axis = n.attrInt("axis", 1);
        if (axis < -rank || axis > rank) {
            throw n.error("axis " + axis + " is out of range for rank " + rank);
        }
        int a = (int) (axis < 0 ? axis + rank : axis);
        return one(x.reshape(OnnxOps.prod(x.dims(), 0, a), OnnxOps.prod(x.dims(), a, rank)));
    }

    /** Flips {@code x} along {@code axis} (a gather with reversed indices). */
    static Tensor reverse(Tensor x, int axis) {
        long size = x.size(axis);
        long[] idx = new long[(int) size];
        for (int i = 0; i < size; i++) {
            idx[i] = size - 1 - i;
        }
        return Indexing.gather(x, longs(idx, x.device(), size), axis);
    }

    /**
     * Slice: starts/ends/axes/steps from attributes (opset &lt; 10, step 1) or inputs 1..4; numpy
     * clamping of starts and ends; a negative step walks backwards (the reversed axis, sliced).
     */
    static Tensor[] slice(OnnxNode n) {
        Tensor x = n.required(0);
        long[] starts;
        long[] ends;
        long[] axes;
        long[] steps = null;
        if (n.opset() < 10) {
            starts = n.attrInts("starts");
            ends = n.attrInts("ends");
            axes = n.attrInts("axes");
        } else {
            starts = n.required(1).toLongArray();
            ends = n.required(2).toLongArray();
            axes = n.input(3) == null ? null : n.input(3).toLongArray();
            steps = n.input(4) == null ? null : n.input(4).toLongArray();
        }
        if (starts == null || ends == null || starts.length != ends.length) {
            throw n.error("starts and ends are required and of equal length");
        }
        int rank = x.rank();
        Tensor y = x;
        for (int i = 0; i < starts.length; i++) {
            int axis = OnnxOps.axis(n, axes == null ? i : axes[i], rank);
            long step = steps == null ? 1 : steps[i];
            if (step == 0) {
                throw n.error("step 0");
            }
            long dim = y.size(axis);
            long s = starts[i];
            long e = ends[i];
            if (step > 0) {
                s = clamp(s < 0 ? s + dim : s, 0, dim);
                e = clamp(e < 0 ? e + dim : e, 0, dim);
                y = e > s ? y.slice(axis, s, e, step) : y.narrow(axis, 0, 0);
            } else {
                s = clamp(s < 0 ? s + dim : s, -1, dim - 1);
                e = clamp(e < 0 ? e + dim : e, -1, dim - 1);
                if (s <= e) {
                    y = y.narrow(axis, 0, 0);
                } else {
                    // positions s, s+step, ... > e: in the reversed axis, dim-1-s up to dim-1-e
                    Tensor rev = reverse(y, axis);
                    y = rev.slice(axis, dim - 1 - s, dim - 1 - e, -step);
                }
            }
        }
        return one(y.contiguous());
    }

    private static long clamp(long v, long lo, long hi) {
        return Math.max(lo, Math.min(hi, v));
    }

    /** Split: sizes from the attribute (opset &lt; 13) or input 1, or num_outputs (18) / equal parts. */
    static Tensor[] split(OnnxNode n) {
        Tensor x = n.required(0);
        int axis = OnnxOps.axis(n, n.attrInt("axis", 0), x.rank());
        long[] sizes = n.opset() >= 13 ? (n.input(1) == null ? null : n.input(1).toLongArray()) : n.attrInts("split");
        int parts = n.outputCount();
        long dim = x.size(axis);
        if (sizes == null) {
            if (n.has("num_outputs")) {
                parts = n.attrIntAsInt("num_outputs", parts);
            }
            long chunk = (dim + parts - 1) / parts;
            sizes = new long[parts];
            for (int i = 0; i < parts; i++) {
                sizes[i] = Math.max(0, Math.min(chunk, dim - i * chunk));
            }
        }
        if (Arrays.stream(sizes).sum() != dim) {
            throw n.error("split sizes " + Arrays.toString(sizes) + " do not add up to " + dim);
        }
        Tensor[] out = new Tensor[sizes.length];
        long at = 0;
        for (int i = 0; i < sizes.length; i++) {
            out[i] = x.narrow(axis, at, sizes[i]).contiguous();
            at += sizes[i];
        }
        return out;
    }

    /** Element offsets (row-major) of a contiguous tensor of dims {@code d}. */
    private static long[] strides(long[] d) {
        long[] s = new long[d.length];
        long acc = 1;
        for (int i = d.length - 1; i >= 0; i--) {
            s[i] = acc;
            acc *= d[i];
        }
        return s;
    }

    /** The elements of {@code x} at flat (row-major) positions {@code flat}, shaped {@code shape}. */
    static Tensor take(Tensor x, long[] flat, long[] shape) {
        Tensor flatX = x.contiguous().reshape(x.numel());
        return Indexing.gather(flatX, longs(flat, x.device(), flat.length), 0).reshape(shape);
    }

    /** GatherElements: out[i...] = data[i... with index[i...] on axis]; negative indices from the end. */
    static Tensor[] gatherElements(OnnxNode n) {
        Tensor data = n.required(0);
        Tensor index = n.required(1);
        int axis = OnnxOps.axis(n, n.attrInt("axis", 0), data.rank());
        long[] d = dims(data);
        long[] id = dims(index);
        long[] idx = index.toLongArray();
        long[] ds = strides(d);
        long[] is = strides(id);
        long[] flat = new long[idx.length];
        for (int p = 0; p < idx.length; p++) {
            long off = 0;
            long rest = p;
            for (int k = 0; k < id.length; k++) {
                long c = rest / is[k];
                rest %= is[k];
                if (k == axis) {
                    c = idx[p] < 0 ? idx[p] + d[k] : idx[p];
                    if (c < 0 || c >= d[k]) {
                        throw n.error("index " + idx[p] + " is out of range for dimension " + k + " of " + data.describe());
                    }
                }
                off += c * ds[k];
            }
            flat[p] = off;
        }
        return one(take(data, flat, id));
    }

    /** GatherND with batch_dims: index tuples of the last index dimension select slices of data. */
    static Tensor[] gatherND(OnnxNode n) {
        Tensor data = n.required(0);
        Tensor index = n.required(1);
        int b = n.attrIntAsInt("batch_dims", 0);
        long[] d = dims(data);
        long[] id = dims(index);
        int q = id.length;
        int k = (int) id[q - 1];
        if (b + k > d.length) {
            throw n.error("index tuples of length " + k + " with batch_dims " + b + " exceed " + data.describe());
        }
        long batch = OnnxOps.prod(d, 0, b);
        long tuples = OnnxOps.prod(id, b, q - 1);
        long slice = OnnxOps.prod(d, b + k, d.length);
        long[] ds = strides(d);
        long[] idx = index.toLongArray();
        long[] flat = new long[(int) (batch * tuples * slice)];
        int p = 0;
        for (long bi = 0; bi < batch; bi++) {
            for (long t = 0; t < tuples; t++) {
                long base = bi * (b > 0 ? ds[b - 1] : 0);
                for (int j = 0; j < k; j++) {
                    long v = idx[(int) ((bi * tuples + t) * k + j)];
                    long dim = d[b + j];
                    v = v < 0 ? v + dim : v;
                    if (v < 0 || v >= dim) {
                        throw n.error("index " + v + " is out of range for dimension " + (b + j) + " of " + data.describe());
                    }
                    base += v * ds[b + j];
                }
                for (long s = 0; s < slice; s++) {
                    flat[p++] = base + s;
                }
            }
        }
        long[] shape = new long[q - 1 + d.length - b - k];
        System.arraycopy(id, 0, shape, 0, q - 1);
        System.arraycopy(d, b + k, shape, q - 1, d.length - b - k);
        return one(take(data, flat, shape));
    }

    /** Tile: repeats[i] copies along each dimension (an expanded view of an interleaved reshape). */
    static Tensor[] tile(OnnxNode n) {
        Tensor x = n.required(0);
        long[] reps = n.required(1).toLongArray();
        long[] d = dims(x);
        if (reps.length != d.length) {
            throw n.error("repeats " + Arrays.toString(reps) + " do not match " + x.describe());
        }
        long[] inter = new long[2 * d.length];
        long[] expanded = new long[2 * d.length];
        long[] out = new long[d.length];
        for (int i = 0; i < d.length; i++) {
            inter[2 * i] = 1;
            inter[2 * i + 1] = d[i];
            expanded[2 * i] = reps[i];
            expanded[2 * i + 1] = d[i];
            out[i] = reps[i] * d[i];
        }
        return one(x.reshape(inter).expand(expanded).contiguous().reshape(out));
    }

    /**
     * Pad (constant, edge, reflect): pads from the attribute (opset &lt; 11) or input 1, as
     * [begin..., end...] over all axes or over input 3's axes (18); the constant from input 2 /
     * attribute value. Negative pads crop. Built from slices and concatenation along each axis.
     */
    static Tensor[] pad(OnnxNode n) {
        Tensor x = n.required(0);
        String mode = n.attrString("mode", "constant");
        int rank = x.rank();
        long[] pads;
        double value;
        long[] axes = null;
        if (n.opset() < 11) {
            pads = n.attrInts(n.has("pads") ? "pads" : "paddings");
            value = n.attrFloat("value", 0);
        } else {
            pads = n.required(1).toLongArray();
            value = n.input(2) == null ? 0 : n.input(2).item();
            axes = n.input(3) == null ? null : n.input(3).toLongArray();
        }
        int count = axes == null ? rank : axes.length;
        if (pads == null || pads.length != 2 * count) {
            throw n.error("pads " + Arrays.toString(pads) + " need " + 2 * count + " values");
        }
        Tensor y = x;
        for (int i = 0; i < count; i++) {
            int axis = axes == null ? i : OnnxOps.axis(n, axes[i], rank);
            long before = pads[i];
            long after = pads[i + count];
            if (before < 0) {
                y = y.narrow(axis, -before, y.size(axis) + before);
                before = 0;
            }
            if (after < 0) {
                y = y.narrow(axis, 0, y.size(axis) + after);
                after = 0;
            }
            if (before == 0 && after == 0) {
                continue;
            }
            List<Tensor> parts = new ArrayList<>();
            parts.add(border(n, y, axis, before, true, mode, value));
            parts.add(y);
            parts.add(border(n, y, axis, after, false, mode, value));
            y = Indexing.concat(axis, parts.toArray(Tensor[]::new));
        }
        return one(y.contiguous());
    }

    private static Tensor border(OnnxNode n, Tensor y, int axis, long width, boolean front, String mode, double value) {
        long[] d = y.dims();
        long dim = d[axis];
        long[] shape = d.clone();
        shape[axis] = width;
        switch (mode) {
            case "constant" -> {
                return Tensor.full(value, y.dtype(), y.device(), shape);
            }
            case "edge" -> {
                Tensor edge = y.narrow(axis, front ? 0 : dim - 1, 1);
                return edge.expand(shape).contiguous();
            }
            case "reflect" -> {
                if (width >= dim) {
                    throw n.error("reflect padding " + width + " needs a dimension larger than it, got " + dim);
                }
                // front: y[width], ..., y[1]; back: y[dim-2], ..., y[dim-1-width]
                Tensor part = front ? y.narrow(axis, 1, width) : y.narrow(axis, dim - 1 - width, width);
                return reverse(part, axis);
            }
            default -> throw n.error("pad mode '" + mode + "' is not supported");
        }
    }
    /**
     * Einsum: each operand's labels (a repeated label takes the diagonal; "..." stands for the
     * broadcast leading dimensions) are aligned on one label order, output labels first (the
     * explicit "->" list, else the labels used once, alphabetically, after the ellipsis); the
     * operands are multiplied with broadcasting and the other labels summed. Cost: the full
     * product over all labels is materialized (sizes multiply), which suits small contractions.
     */
    static Tensor[] einsum(OnnxNode n) {
        String eq = n.attrString("equation", "").replace(" ", "");
        String[] sides = eq.split("->", -1);
        String[] terms = sides[0].split(",", -1);
        if (terms.length != n.inputCount()) {
            throw n.error("equation '" + eq + "' has " + terms.length + " operands for " + n.inputCount() + " inputs");
        }
        final char ell = '\u0100'; // ellipsis dims become labels ell, ell+1, ... (left to right)
        int ellRank = 0;
        for (int i = 0; i < terms.length; i++) {
            if (terms[i].contains("...")) {
                ellRank = Math.max(ellRank, n.required(i).rank() - (terms[i].length() - 3));
            }
        }
        StringBuilder ellLabels = new StringBuilder();
        for (int k = 0; k < ellRank; k++) {
            ellLabels.append((char) (ell + k));
        }
        List<String> ops = new ArrayList<>();
        List<Tensor> xs = new ArrayList<>();
        for (int i = 0; i < terms.length; i++) {
            Tensor x = n.required(i);
            String t = terms[i];
            if (t.contains("...")) {
                int here = x.rank() - (t.length() - 3);
                t = t.replace("...", ellLabels.substring(ellRank - here));
            }
            if (t.length() != x.rank()) {
                throw n.error("operand " + i + " '" + terms[i] + "' does not match " + x.describe());
            }
            // repeated labels: take the diagonal
            while (true) {
                int dup = -1;
                int first = -1;
                for (int a = 0; a < t.length() && dup < 0; a++) {
                    int b = t.indexOf(t.charAt(a), a + 1);
                    if (b > 0) {
                        first = a;
                        dup = b;
                    }
                }
                if (dup < 0) {
                    break;
                }
                x = diagonal(x, first, dup);
                t = t.substring(0, dup) + t.substring(dup + 1);
            }
            ops.add(t);
            xs.add(x);
        }
        String out;
        if (sides.length == 2) {
            out = sides[1].replace("...", ellLabels.toString());
        } else {
            StringBuilder once = new StringBuilder();
            String all = String.join("", ops);
            all.chars().filter(c -> c >= ell).distinct().sorted().forEach(c -> once.append((char) c));
            all.chars().filter(c -> c < ell && all.indexOf(c) == all.lastIndexOf(c)).sorted()
                    .forEach(c -> once.append((char) c));
            out = once.toString();
        }
        StringBuilder order = new StringBuilder(out);
        for (String t : ops) {
            for (char c : t.toCharArray()) {
                if (order.indexOf(String.valueOf(c)) < 0) {
                    order.append(c);
                }
            }
        }
        int rank = order.length();
        Tensor product = null;
        for (int i = 0; i < ops.size(); i++) {
            String t = ops.get(i);
            Tensor x = xs.get(i);
            // permute x's labels into the global order, then insert size-1 dims for the others
            Integer[] idx = new Integer[t.length()];
            for (int k = 0; k < idx.length; k++) {
                idx[k] = k;
            }
            final String term = t;
            Arrays.sort(idx, (a, b) -> Integer.compare(order.indexOf(String.valueOf(term.charAt(a))),
                    order.indexOf(String.valueOf(term.charAt(b)))));
            int[] perm = new int[idx.length];
            long[] dims = new long[rank];
            Arrays.fill(dims, 1);
            for (int k = 0; k < idx.length; k++) {
                perm[k] = idx[k];
                dims[order.indexOf(String.valueOf(t.charAt(idx[k])))] = x.size(idx[k]);
            }
            Tensor aligned = (idx.length == 0 ? x : x.permute(perm)).reshape(dims);
            product = product == null ? aligned : dev.cortado.ops.Elementwise.mul(product, aligned);
        }
        if (rank > out.length()) {
            product = dev.cortado.ops.Reductions.sum(product, false, OnnxOps.range(out.length(), rank));
        }
        return one(product.contiguous());
    }

    /** The diagonal of dimensions a &lt; b (equal sizes), kept at position a. */
    private static Tensor diagonal(Tensor x, int a, int b) {
        long[] d = x.dims();
        if (d[a] != d[b]) {
            throw new IllegalArgumentException("einsum: repeated label over sizes " + d[a] + " and " + d[b]);
        }
        long[] st = strides(d);
        long[] outDims = new long[d.length - 1];
        for (int i = 0, k = 0; i < d.length; i++) {
            if (i != b) {
                outDims[k++] = d[i];
            }
        }
        long total = 1;
        for (long v : outDims) {
            total *= v;
        }
        long[] outStrides = strides(outDims);
        long[] flat = new long[(int) total];
        for (int p = 0; p < total; p++) {
            long rest = p;
            long off = 0;
            for (int k = 0; k < outDims.length; k++) {
                long c = rest / outStrides[k];
                rest %= outStrides[k];
                int src = k < b ? k : k + 1;
                off += c * st[src];
                if (k == a) {
                    off += c * st[b];
                }
            }
            flat[p] = off;
        }
        return take(x, flat, outDims);
    }
}
