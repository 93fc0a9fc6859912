package dev.cortado.sparse;

import dev.cortado.ops.Elementwise;
import dev.cortado.ops.Sparse;
import dev.cortado.ops.Sparse.NM;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Device;
import dev.cortado.tensor.Layout;
import dev.cortado.tensor.Tensor;
import java.util.Arrays;

/**
 * A sparse matrix {@code [rows, cols]}: its {@link Layout} and the dense component tensors that
 * hold it (int64 indices, values of a floating dtype, on one device).
 *
 * <ul>
 *   <li>{@link Layout#COO}: {@code rowIndices [nnz]}, {@code colIndices [nnz]}, {@code values [nnz]};
 *       any order, duplicates allowed ({@link #isCoalesced()}; {@link #coalesce()} sorts and sums them).
 *   <li>{@link Layout#CSR}: {@code crowIndices [rows + 1]}, {@code colIndices [nnz]} sorted and
 *       distinct within each row, {@code values [nnz]}.
 *   <li>{@link Layout#BSR}: CSR over {@code blockSize x blockSize} blocks: {@code crowIndices
 *       [rows / blockSize + 1]}, block column indices {@code [nnzb]}, {@code values [nnzb, blockSize, blockSize]}.
 *   <li>{@link Layout#NM}: exactly n kept entries in every group of m consecutive columns:
 *       {@code values [rows, cols / m * n]} and {@code meta} (uint8, same shape: each entry's position
 *       in its group, increasing within a group). Used for weights; {@code cols} is then the k of a GEMM.
 * </ul>
 *
 * <p>Every factory validates the indices on the host before anything else sees them (in range,
 * CSR/BSR rows sorted without duplicates, N:M positions increasing) and throws an
 * {@link IllegalArgumentException} naming the factory, the argument, the position and the rule. A
 * sparse tensor owns its components (its own views of the tensors it was given; the caller keeps
 * and closes theirs) and closes them on {@link #close()}. It is immutable; the values may require
 * gradients, which {@link #matmul} carries to them on the stored pattern.
 *
 * <p>A sparse tensor is not a {@link Tensor}: the dense ops cannot be handed one. Its products are
 * {@link #matmul} (every layout) and the ops of {@link Sparse}.
 */
public final class SparseTensor implements AutoCloseable {
    private final Layout layout;
    private final long rows;
    private final long cols;
    private final Tensor values;
    private final Tensor first;   // COO: row indices; CSR/BSR: crow indices; NM: null
    private final Tensor second;  // COO/CSR: column indices; BSR: block column indices; NM: meta
    private final int blockSize;  // BSR
    private final NM nm;          // NM
    private final boolean coalesced;
    private boolean closed;

    private SparseTensor(Layout layout, long rows, long cols, Tensor values, Tensor first, Tensor second, int blockSize,
                         NM nm, boolean coalesced) {
        this.layout = layout;
        this.rows = rows;
        this.cols = cols;
        this.values = values;
        this.first = first;
        this.second = second;
        this.blockSize = blockSize;
        this.nm = nm;
        this.coalesced = coalesced;
    }

    // ------------------------------------------------------------------ factories from components
    /** A COO matrix; the indices may be in any order and repeat (duplicates add up). */
    public static SparseTensor coo(Tensor rowIndices, Tensor colIndices, Tensor values, long rows, long cols) {
        String fn = "SparseTensor.coo";
        checkDims(fn, rows, cols);
        long nnz = checkValues(fn, values, 1);
        long[] r = indexArray(fn, "rowIndices", rowIndices, nnz, values);
        long[] c = indexArray(fn, "colIndices", colIndices, nnz, values);
        boolean sorted = true;
        for (int e = 0; e < r.length; e++) {
            inRange(fn, "rowIndices", e, r[e], rows);
            inRange(fn, "colIndices", e, c[e], cols);
            if (e > 0 && (r[e] < r[e - 1] || (r[e] == r[e - 1] && c[e] <= c[e - 1]))) {
                sorted = false;
            }
        }
        return new SparseTensor(Layout.COO, rows, cols, own(values), own(rowIndices), own(colIndices), 0, null, sorted);
    }

    /** A CSR matrix: crow [rows + 1] (0 first, non-decreasing, nnz last), col sorted and distinct per row. */
    public static SparseTensor csr(Tensor crowIndices, Tensor colIndices, Tensor values, long rows, long cols) {
        String fn = "SparseTensor.csr";
        checkDims(fn, rows, cols);
        long nnz = checkValues(fn, values, 1);
        checkCompressed(fn, crowIndices, colIndices, nnz, rows, cols, values);
        return new SparseTensor(Layout.CSR, rows, cols, own(values), own(crowIndices), own(colIndices), 0, null, true);
    }

    /** A BSR matrix of square {@code blockSize} blocks: values [nnzb, blockSize, blockSize]. */
    public static SparseTensor bsr(Tensor crowIndices, Tensor colIndices, Tensor values, long rows, long cols, int blockSize) {
        String fn = "SparseTensor.bsr";
        checkDims(fn, rows, cols);
        if (blockSize < 1 || rows % blockSize != 0 || cols % blockSize != 0) {
            throw new IllegalArgumentException(fn + ": blockSize " + blockSize + " must be positive and divide rows " + rows
                    + " and cols " + cols);
        }
        long nnzb = checkValues(fn, values, 3);
        if (values.size(1) != blockSize || values.size(2) != blockSize) {
            throw new IllegalArgumentException(fn + ": values " + values.describe() + " must be [nnzb, " + blockSize + ", "
                    + blockSize + "]");
        }
        checkCompressed(fn, crowIndices, colIndices, nnzb, rows / blockSize, cols / blockSize, values);
        return new SparseTensor(Layout.BSR, rows, cols, own(values), own(crowIndices), own(colIndices), blockSize, null, true);
    }

    /** An N:M matrix {@code [rows, cols]}: values and uint8 meta {@code [rows, cols / m * n]}. */
    public static SparseTensor nm(Tensor values, Tensor meta, int n, int m, long rows, long cols) {
        String fn = "SparseTensor.nm";
        NM p = new NM(n, m);
        checkDims(fn, rows, cols);
        if (cols % m != 0) {
            throw new IllegalArgumentException(fn + ": cols " + cols + " is not a multiple of M = " + m);
        }
        checkValues(fn, values, 2);
        long per = cols / m * n;
        if (values.size(0) != rows || values.size(1) != per) {
            throw new IllegalArgumentException(fn + ": values " + values.describe() + " must be [" + rows + ", " + per
                    + "] for a " + p + " matrix [" + rows + ", " + cols + "]");
        }
        if (meta.dtype() != DType.UINT8 || !meta.shape().equals(values.shape()) || !meta.device().equals(values.device())) {
            throw new IllegalArgumentException(fn + ": meta " + meta.describe() + " must be uint8 " + values.shape()
                    + " on " + values.device());
        }
        byte[] q = meta.toByteArray();
        for (int s = 0; s < q.length; s++) {
            int pos = q[s] & 0xff;
            int t = (int) (s % n);
            if (pos >= m || (t > 0 && pos <= (q[s - 1] & 0xff))) {
                throw new IllegalArgumentException(fn + ": meta of row " + s / per + ", group " + (s % per) / n + ", slot " + t
                        + " is " + pos + ": a " + p + " pattern needs positions in [0, " + m
                        + "), strictly increasing within a group");
            }
        }
        return new SparseTensor(Layout.NM, rows, cols, own(values), null, own(meta), 0, p, true);
    }

    // ------------------------------------------------------------------ from dense
    /**
     * Starts a conversion of the dense matrix {@code dense [rows, cols]}: by default the non-zero
     * entries are kept; {@link DenseConversion#mask} or {@link DenseConversion#density} choose them.
     */
    public static DenseConversion fromDense(Tensor dense) {
        return new DenseConversion(dense);
    }

    /** Which entries of a dense matrix a conversion keeps, and into which layout. */
    public static final class DenseConversion {
        private final Tensor dense;
        private Tensor mask;
        private double density = -1;

        private DenseConversion(Tensor dense) {
            if (dense.rank() != 2) {
                throw new IllegalArgumentException("SparseTensor.fromDense: " + dense.describe() + " is not a matrix (rank 2)");
            }
            if (!dense.dtype().isFloatingPoint()) {
                throw new IllegalArgumentException("SparseTensor.fromDense: " + dense.describe() + " is not floating point");
            }
            this.dense = dense;
        }

        /** Keep the entries where {@code mask} (bool, the dense shape) is true, zeros included. */
        public DenseConversion mask(Tensor mask) {
            if (mask.dtype() != DType.BOOL || !mask.shape().equals(dense.shape())) {
                throw new IllegalArgumentException("SparseTensor.fromDense: mask " + mask.describe() + " must be bool "
                        + dense.shape());
            }
            this.mask = mask;
            this.density = -1;
            return this;
        }

        /**
         * Keep the {@code round(density * numel)} entries of largest magnitude (ties to the lower
         * row-major position; through the top-k kernel). For BSR: that fraction of the blocks, by
         * their Frobenius norm. Not for N:M, whose density is n / m.
         */
        public DenseConversion density(double d) {
            if (!(d >= 0 && d <= 1)) {
                throw new IllegalArgumentException("SparseTensor.fromDense: density " + d + " is not in [0, 1]");
            }
            this.density = d;
            this.mask = null;
            return this;
        }

        public SparseTensor toCoo() {
            long[] pos = positions();
            long c = dense.size(1);
            long[] r = new long[pos.length];
            long[] k = new long[pos.length];
            for (int e = 0; e < pos.length; e++) {
                r[e] = pos[e] / c;
                k[e] = pos[e] % c;
            }
            return build(Layout.COO, r, k, gather(pos), dense.size(0), c);
        }

        public SparseTensor toCsr() {
            long[] pos = positions();
            long rows = dense.size(0);
            long c = dense.size(1);
            long[] crow = new long[(int) rows + 1];
            long[] k = new long[pos.length];
            for (int e = 0; e < pos.length; e++) {
                crow[(int) (pos[e] / c) + 1]++;
                k[e] = pos[e] % c;
            }
            for (int i = 0; i < rows; i++) {
                crow[i + 1] += crow[i];
            }
            return build(Layout.CSR, crow, k, gather(pos), rows, c);
        }

        /** BSR of square {@code blockSize} blocks: a block is kept when any of its entries is (mask / non-zero) or by norm (density). */
        public SparseTensor toBsr(int blockSize) {
            long rows = dense.size(0);
            long c = dense.size(1);
            if (blockSize < 1 || rows % blockSize != 0 || c % blockSize != 0) {
                throw new IllegalArgumentException("SparseTensor.fromDense: blockSize " + blockSize + " must divide rows "
                        + rows + " and cols " + c);
            }
            int br = (int) (rows / blockSize);
            int bc = (int) (c / blockSize);
            double[] x = dense.toDoubleArray();
            boolean[] keep = new boolean[br * bc];
            if (density >= 0) {
                double[] norm = new double[br * bc];
                for (int i = 0; i < rows; i++) {
                    for (int j = 0; j < c; j++) {
                        double v = x[(int) (i * c + j)];
                        norm[(i / blockSize) * bc + j / blockSize] += v * v;
                    }
                }
                for (long b : largest(norm, Math.round(density * norm.length))) {
                    keep[(int) b] = true;
                }
            } else {
                boolean[] m = mask != null ? mask.toBooleanArray() : null;
                for (int i = 0; i < rows * c; i++) {
                    if (m != null ? m[i] : x[i] != 0) {
                        keep[(int) ((i / c) / blockSize * bc + (i % c) / blockSize)] = true;
                    }
                }
            }
            long[] crow = new long[br + 1];
            int nnzb = 0;
            for (int b = 0; b < keep.length; b++) {
                if (keep[b]) {
                    nnzb++;
                }
            }
            long[] bcol = new long[nnzb];
            double[] v = new double[nnzb * blockSize * blockSize];
            int e = 0;
            for (int i = 0; i < br; i++) {
                for (int j = 0; j < bc; j++) {
                    if (keep[i * bc + j]) {
                        bcol[e] = j;
                        for (int a = 0; a < blockSize; a++) {
                            for (int b = 0; b < blockSize; b++) {
                                v[(e * blockSize + a) * blockSize + b] = x[(int) ((i * blockSize + a) * c + j * blockSize + b)];
                            }
                        }
                        e++;
                    }
                }
                crow[i + 1] = e;
            }
            try (Tensor ct = onDevice(Tensor.of(crow, crow.length)); Tensor kt = onDevice(Tensor.of(bcol, bcol.length));
                 Tensor vt = valuesTensor(v, nnzb, blockSize, blockSize)) {
                return bsr(ct, kt, vt, rows, c, blockSize);
            }
        }

        /**
         * N:M: by magnitude (the n largest |x| of every m, through the {@code nm_compress} kernel), or
         * by mask (at most n kept per group; a group with fewer is padded with zero entries at its
         * first unmasked positions).
         */
        public SparseTensor toNm(int n, int m) {
            NM p = new NM(n, m);
            long rows = dense.size(0);
            long k = dense.size(1);
            if (k % m != 0) {
                throw new IllegalArgumentException("SparseTensor.fromDense: cols " + k + " is not a multiple of M = " + m);
            }
            if (density >= 0) {
                throw new IllegalArgumentException("SparseTensor.fromDense: an N:M matrix keeps n / m of each group; "
                        + "use toNm without density (by magnitude) or with a mask");
            }
            if (mask == null) {
                Tensor[] vm = Sparse.nmCompress(dense, p);
                try (Tensor v = vm[0]; Tensor meta = vm[1]) {
                    return nm(v, meta, n, m, rows, k);
                }
            }
            boolean[] keep = mask.toBooleanArray();
            double[] x = dense.toDoubleArray();
            long groups = rows * (k / m);
            double[] v = new double[(int) (groups * n)];
            byte[] meta = new byte[v.length];
            for (int g = 0; g < groups; g++) {
                int kept = 0;
                for (int q = 0; q < m; q++) {
                    kept += keep[g * m + q] ? 1 : 0;
                }
                if (kept > n) {
                    throw new IllegalArgumentException("SparseTensor.fromDense: the mask keeps " + kept + " entries of group "
                            + g % (k / m) + " in row " + g / (k / m) + "; " + p + " allows at most " + n);
                }
                int pad = n - kept;
                int t = 0;
                for (int q = 0; q < m; q++) {
                    boolean take = keep[g * m + q] || (pad > 0 && !keep[g * m + q]);
                    if (!keep[g * m + q] && take) {
                        pad--;
                    }
                    if (take) {
                        v[g * n + t] = keep[g * m + q] ? x[g * m + q] : 0;
                        meta[g * n + t] = (byte) q;
                        t++;
                    }
                }
            }
            long per = k / m * n;
            try (Tensor vt = valuesTensor(v, rows, per); Tensor mt = onDevice(Tensor.of(meta, DType.UINT8, rows, per))) {
                return nm(vt, mt, n, m, rows, k);
            }
        }

        /** Row-major flat positions kept, ascending. */
        private long[] positions() {
            long numel = dense.numel();
            if (numel > Integer.MAX_VALUE - 8) {
                throw new IllegalArgumentException("SparseTensor.fromDense: " + dense.describe() + " is larger than a Java array");
            }
            if (density >= 0) {
                try (Tensor a = Elementwise.abs(dense); Tensor flat = a.reshape(numel)) {
                    long[] pos = largestOf(flat, Math.round(density * numel));
                    Arrays.sort(pos);
                    return pos;
                }
            }
            boolean[] keep = mask != null ? mask.toBooleanArray() : null;
            double[] x = keep == null ? dense.toDoubleArray() : null;
            int count = 0;
            for (int i = 0; i < numel; i++) {
                count += (keep != null ? keep[i] : x[i] != 0) ? 1 : 0;
            }
            long[] pos = new long[count];
            int e = 0;
            for (int i = 0; i < numel; i++) {
                if (keep != null ? keep[i] : x[i] != 0) {
                    pos[e++] = i;
                }
            }
            return pos;
        }

        private double[] gather(long[] pos) {
            double[] x = dense.toDoubleArray();
            double[] v = new double[pos.length];
            for (int e = 0; e < pos.length; e++) {
                v[e] = x[(int) pos[e]];
            }
            return v;
        }

        private SparseTensor build(Layout layout, long[] a, long[] b, double[] v, long rows, long cols) {
            try (Tensor at = onDevice(Tensor.of(a, a.length)); Tensor bt = onDevice(Tensor.of(b, b.length));
                 Tensor vt = valuesTensor(v, v.length)) {
                return layout == Layout.COO ? coo(at, bt, vt, rows, cols) : csr(at, bt, vt, rows, cols);
            }
        }

        private Tensor onDevice(Tensor host) {
            if (dense.device().equals(Device.CPU)) {
                return host;
            }
            try (host) {
                return host.to(dense.device());
            }
        }

        private Tensor valuesTensor(double[] v, long... dims) {
            try (Tensor d = Tensor.of(v, dims)) {
                return d.to(dense.dtype(), dense.device());
            }
        }
    }

    /** Positions of the {@code k} largest values of a host array (ties to the lower position). */
    private static long[] largest(double[] v, long k) {
        try (Tensor t = Tensor.of(v, v.length)) {
            return largestOf(t, k);
        }
    }

    private static long[] largestOf(Tensor flat, long k) {
        if (k == 0) {
            return new long[0];
        }
        try (Tensor h = flat.to(Device.CPU)) { // the CUDA top-k sorts lines of at most 2048 elements
            Tensor[] top = Sparse.topk(h, (int) k, 0, true);
            try (Tensor values = top[0]; Tensor indices = top[1]) {
                return indices.toLongArray();
            }
        }
    }

    // ------------------------------------------------------------------ properties
    public Layout layout() {
        return layout;
    }

    public long rows() {
        return rows;
    }

    public long cols() {
        return cols;
    }

    /** The dense shape {@code [rows, cols]}. */
    public long[] dims() {
        return new long[] {rows, cols};
    }

    public DType dtype() {
        return values.dtype();
    }

    public Device device() {
        return values.device();
    }

    /** Stored values: COO/CSR {@code [nnz]}, BSR {@code [nnzb, b, b]}, N:M {@code [rows, cols / m * n]}. */
    public Tensor values() {
        ensureOpen("values");
        return values;
    }

    /** CSR and BSR: the row pointers (BSR: over block rows). */
    public Tensor crowIndices() {
        require("crowIndices", Layout.CSR, Layout.BSR);
        return first;
    }

    /** COO: the row index of each entry. */
    public Tensor rowIndices() {
        require("rowIndices", Layout.COO);
        return first;
    }

    /** COO and CSR: the column index of each entry; BSR: the block column of each block. */
    public Tensor colIndices() {
        require("colIndices", Layout.COO, Layout.CSR, Layout.BSR);
        return second;
    }

    /** N:M: each kept entry's position within its group (uint8). */
    public Tensor meta() {
        require("meta", Layout.NM);
        return second;
    }

    /** BSR: the block size. */
    public int blockSize() {
        require("blockSize", Layout.BSR);
        return blockSize;
    }

    /** N:M: the pattern. */
    public NM pattern() {
        require("pattern", Layout.NM);
        return nm;
    }

    /** COO: whether the entries are sorted row-major without duplicates (always true for the other layouts). */
    public boolean isCoalesced() {
        return coalesced;
    }

    /** Stored entries (BSR: every element of the stored blocks; N:M: the kept entries). */
    public long nnz() {
        ensureOpen("nnz");
        return values.numel();
    }

    /** Stored entries over {@code rows * cols} (0 for an empty matrix). */
    public double density() {
        long total = rows * cols;
        return total == 0 ? 0 : (double) nnz() / total;
    }

    // ------------------------------------------------------------------ conversions
    /** The dense matrix (zeros where nothing is stored; COO duplicates add up), same dtype and device. */
    public Tensor toDense() {
        ensureOpen("toDense");
        if (layout == Layout.NM) {
            return Sparse.nmDecompress(values, second, nm);
        }
        if (rows * cols > Integer.MAX_VALUE - 8) {
            throw new IllegalStateException("toDense: [" + rows + ", " + cols + "] is larger than a Java array");
        }
        double[] out = new double[(int) (rows * cols)];
        double[] v = values.toDoubleArray();
        if (layout == Layout.COO) {
            long[] r = first.toLongArray();
            long[] c = second.toLongArray();
            for (int e = 0; e < v.length; e++) {
                out[(int) (r[e] * cols + c[e])] += v[e];
            }
        } else {
            long[] crow = first.toLongArray();
            long[] c = second.toLongArray();
            int b = layout == Layout.BSR ? blockSize : 1;
            for (int i = 0; i + 1 < crow.length; i++) {
                for (long e = crow[i]; e < crow[i + 1]; e++) {
                    for (int a = 0; a < b; a++) {
                        for (int q = 0; q < b; q++) {
                            out[(int) ((i * b + a) * cols + c[(int) e] * b + q)] = v[(int) ((e * b + a) * b + q)];
                        }
                    }
                }
            }
        }
        try (Tensor d = Tensor.of(out, rows, cols)) {
            return d.to(dtype(), device());
        }
    }

    /** COO with sorted entries and duplicates summed; this matrix (a new handle) if already coalesced. */
    public SparseTensor coalesce() {
        require("coalesce", Layout.COO);
        if (coalesced) {
            return new SparseTensor(layout, rows, cols, own(values), own(first), own(second), 0, null, true);
        }
        try (Tensor d = toDense()) {
            long[] r = first.toLongArray();
            long[] c = second.toLongArray();
            boolean[] keep = new boolean[(int) (rows * cols)];
            for (int e = 0; e < r.length; e++) {
                keep[(int) (r[e] * cols + c[e])] = true;
            }
            try (Tensor m = Tensor.of(keep, rows, cols); Tensor md = m.to(device())) {
                return fromDense(d).mask(md).toCoo();
            }
        }
    }

    /** The same matrix in CSR (COO: coalesced first; BSR and N:M: their stored entries, zeros included). */
    public SparseTensor toCsr() {
        ensureOpen("toCsr");
        if (layout == Layout.CSR) {
            return new SparseTensor(layout, rows, cols, own(values), own(first), own(second), 0, null, true);
        }
        try (Tensor d = toDense(); Tensor m = storedMask()) {
            return fromDense(d).mask(m).toCsr();
        }
    }

    /** The positions this matrix stores, as a bool mask on its device. */
    private Tensor storedMask() {
        boolean[] keep = new boolean[(int) (rows * cols)];
        if (layout == Layout.NM) {
            byte[] q = second.toByteArray();
            long per = cols / nm.m() * nm.n();
            for (int s = 0; s < q.length; s++) {
                long r = s / per;
                long g = (s % per) / nm.n();
                keep[(int) (r * cols + g * nm.m() + (q[s] & 0xff))] = true;
            }
        } else if (layout == Layout.COO) {
            long[] r = first.toLongArray();
            long[] c = second.toLongArray();
            for (int e = 0; e < r.length; e++) {
                keep[(int) (r[e] * cols + c[e])] = true;
            }
        } else {
            long[] crow = first.toLongArray();
            long[] c = second.toLongArray();
            int b = layout == Layout.BSR ? blockSize : 1;
            for (int i = 0; i + 1 < crow.length; i++) {
                for (long e = crow[i]; e < crow[i + 1]; e++) {
                    for (int a = 0; a < b; a++) {
                        for (int q = 0; q < b; q++) {
                            keep[(int) ((i * b + a) * cols + c[(int) e] * b + q)] = true;
                        }
                    }
                }
            }
        }
        try (Tensor m = Tensor.of(keep, rows, cols)) {
            return m.to(device());
        }
    }

    // ------------------------------------------------------------------ products
    /**
     * {@code this · b} for a dense {@code b [cols, n]}: CSR through {@code csr_spmm}, BSR through
     * {@code bsr_spmm} (CPU), N:M through {@code nm_matmul}, COO through CSR after coalescing.
     * Gradients reach b and the stored values.
     */
    public Tensor matmul(Tensor b) {
        ensureOpen("matmul");
        if (b.rank() != 2 || b.size(0) != cols) {
            throw new IllegalArgumentException("SparseTensor.matmul: b " + b.describe() + " must be [" + cols + ", n] for "
                    + describeShape());
        }
        return switch (layout) {
            case CSR -> Sparse.csrSpmm(first, second, values, b);
            case NM -> Sparse.nmMatmul(values, second, nm, b);
            case COO -> {
                try (SparseTensor c = toCsr()) {
                    yield Sparse.csrSpmm(c.first, c.second, c.values, b);
                }
            }
            case BSR -> Sparse.bsrSpmm(first, second, values, b);
            default -> throw new IllegalStateException("SparseTensor.matmul: unknown layout " + layout);
        };
    }

    // ------------------------------------------------------------------ printing, closing
    private String describeShape() {
        String extra = switch (layout) {
            case BSR -> " blocks " + blockSize + "x" + blockSize;
            case NM -> " " + nm;
            default -> "";
        };
        return layout.name().toLowerCase() + extra + " " + dtype() + "[" + rows + ", " + cols + "] on " + device();
    }

    /**
     * {@code csr float32[4, 5] on cpu, nnz 6 (density 0.300)} followed by the components (at
     * most 16 entries each, then "...").
     */
    @Override
    public String toString() {
        if (closed) {
            return layout.name().toLowerCase() + " sparse tensor (closed)";
        }
        StringBuilder s = new StringBuilder(describeShape()).append(", nnz ").append(nnz())
                .append(String.format(" (density %.3f)", density()));
        if (!coalesced) {
            s.append(", not coalesced");
        }
        switch (layout) {
            case COO -> s.append("\n  row_indices: ").append(head(first)).append("\n  col_indices: ").append(head(second));
            case CSR, BSR -> s.append("\n  crow_indices: ").append(head(first)).append("\n  col_indices: ").append(head(second));
            case NM -> s.append("\n  meta: ").append(head(second));
            default -> { }
        }
        return s.append("\n  values: ").append(head(values)).toString();
    }

    private static String head(Tensor t) {
        double[] v = t.dtype() == DType.UINT8 ? bytes(t.toByteArray()) : t.toDoubleArray();
        StringBuilder s = new StringBuilder("[");
        for (int i = 0; i < Math.min(v.length, 16); i++) {
            if (i > 0) {
                s.append(", ");
            }
            s.append(t.dtype().isFloatingPoint() ? String.format("%.4g", v[i]) : Long.toString((long) v[i]));
        }
        return s.append(v.length > 16 ? ", ... (" + v.length + ")]" : "]").toString();
    }

    private static double[] bytes(byte[] b) {
        double[] d = new double[b.length];
        for (int i = 0; i < b.length; i++) {
            d[i] = b[i] & 0xff;
        }
        return d;
    }

    @Override
    public void close() {
        if (!closed) {
            closed = true;
            values.close();
            if (first != null) {
                first.close();
            }
            if (second != null) {
                second.close();
            }
        }
    }

    // ------------------------------------------------------------------ validation helpers
    private void ensureOpen(String what) {
        if (closed) {
            throw new IllegalStateException("SparseTensor." + what + ": the " + layout + " tensor is closed");
        }
    }

    private void require(String what, Layout... allowed) {
        ensureOpen(what);
        for (Layout l : allowed) {
            if (l == layout) {
                return;
            }
        }
        throw new IllegalStateException("SparseTensor." + what + ": not defined for the " + layout + " layout (only "
                + Arrays.toString(allowed) + ")");
    }

    /** Our own view (the caller keeps theirs). */
    private static Tensor own(Tensor t) {
        return t.contiguous();
    }

    private static void checkDims(String fn, long rows, long cols) {
        if (rows < 0 || cols < 0) {
            throw new IllegalArgumentException(fn + ": shape [" + rows + ", " + cols + "] has a negative size");
        }
    }

    private static long checkValues(String fn, Tensor values, int rank) {
        values.ensureOpen(fn);
        if (!values.dtype().isFloatingPoint() || values.rank() != rank) {
            throw new IllegalArgumentException(fn + ": values " + values.describe() + " must be floating point of rank " + rank);
        }
        return values.size(0);
    }

    private static long[] indexArray(String fn, String name, Tensor t, long length, Tensor values) {
        t.ensureOpen(fn);
        if (t.dtype() != DType.INT64 || t.rank() != 1 || t.size(0) != length) {
            throw new IllegalArgumentException(fn + ": " + name + " " + t.describe() + " must be int64 [" + length + "]");
        }
        if (!t.device().equals(values.device())) {
            throw new IllegalArgumentException(fn + ": " + name + " " + t.describe() + " is not on the device of values "
                    + values.describe());
        }
        return t.toLongArray();
    }

    private static void inRange(String fn, String name, int e, long v, long bound) {
        if (v < 0 || v >= bound) {
            throw new IllegalArgumentException(fn + ": " + name + "[" + e + "] = " + v + " is out of range [0, " + bound + ")");
        }
    }

    /** CSR / BSR indices over {@code rows x cols} (blocks for BSR) with {@code nnz} stored entries. */
    private static void checkCompressed(String fn, Tensor crowIndices, Tensor colIndices, long nnz, long rows, long cols,
                                        Tensor values) {
        long[] crow = indexArray(fn, "crowIndices", crowIndices, rows + 1, values);
        long[] col = indexArray(fn, "colIndices", colIndices, nnz, values);
        if (crow[0] != 0) {
            throw new IllegalArgumentException(fn + ": crowIndices[0] = " + crow[0] + ", must be 0");
        }
        for (int i = 0; i < rows; i++) {
            if (crow[i + 1] < crow[i] || crow[i + 1] > nnz) {
                throw new IllegalArgumentException(fn + ": crowIndices[" + (i + 1) + "] = " + crow[i + 1] + " after "
                        + crow[i] + " (must be non-decreasing and at most nnz = " + nnz + ")");
            }
            for (long e = crow[i]; e < crow[i + 1]; e++) {
                inRange(fn, "colIndices", (int) e, col[(int) e], cols);
                if (e > crow[i] && col[(int) e] <= col[(int) e - 1]) {
                    throw new IllegalArgumentException(fn + ": colIndices[" + e + "] = " + col[(int) e] + " follows "
                            + col[(int) e - 1] + " in row " + i + " (column indices must be sorted and distinct within a row)");
                }
            }
        }
        if (crow[(int) rows] != nnz) {
            throw new IllegalArgumentException(fn + ": crowIndices[" + rows + "] = " + crow[(int) rows] + ", must equal nnz = "
                    + nnz);
        }
    }
}
