package dev.cortado.nn;

import dev.cortado.autograd.Autograd;
import dev.cortado.ops.Indexing;
import dev.cortado.ops.Sparse;
import dev.cortado.sparse.RowSparseGradient;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.Scope;
import dev.cortado.tensor.Tensor;

/**
 * Sums or means of bags of embedding rows without materializing the rows, PyTorch's
 * {@code nn.EmbeddingBag}: {@code indices} int64 [n] holds the bags one after another,
 * {@code offsets} int64 [B] where each bag starts (offsets[0] = 0, non-decreasing, at most n; an
 * empty bag gives zeros), optional {@code perSampleWeights} [n] (mode SUM only) scale each
 * row. Output [B, dim].
 *
 * <p>An embedding bag is a CSR sparse x dense product: bag b is CSR row b, its indices the
 * column positions, its values the per-sample weights (1, or 1/|bag| for MEAN), and the table
 * the dense operand. So the forward pass is the registry's {@code csr_spmm} op (CPU AVX-512 /
 * AVX2 row kernel, CUDA kernel), its backward {@code csr_spmm_t} (to the table) and
 * {@code csr_sddmm} (to the per-sample weights).
 *
 * <p><b>Sparse gradient.</b> With {@code sparse = true} the table gets no dense gradient:
 * the touched rows are gathered (a leaf [n, dim] that requires grad), the bags reduce those
 * (the same {@code csr_spmm}, on an identity column pattern), and after {@code backward()}
 * {@link #sparseGradient()} coalesces the rows' gradients into a {@link RowSparseGradient} for
 * {@link dev.cortado.sparse.RowSparseOptimizer}: memory and update cost proportional to the rows
 * a batch touches.
 */
public class EmbeddingBag extends Module {
    /** How a bag's rows combine. */
    public enum Mode { SUM, MEAN }

    private final long num;
    private final long dim;
    private final Mode mode;
    private final boolean sparse;
    private Tensor lastRows;
    private Tensor lastIndices;

    public EmbeddingBag(long numEmbeddings, long dim, Mode mode, boolean sparse) {
        this(numEmbeddings, dim, mode, sparse, ParamOptions.defaults());
    }

    public EmbeddingBag(long numEmbeddings, long dim, Mode mode, boolean sparse, ParamOptions o) {
        if (numEmbeddings <= 0 || dim <= 0) {
            throw new IllegalArgumentException("EmbeddingBag: sizes must be positive, got " + numEmbeddings + " x " + dim);
        }
        this.num = numEmbeddings;
        this.dim = dim;
        this.mode = mode;
        this.sparse = sparse;
        registerParameter("weight", unscoped(() ->
                Init.normal(Tensor.empty(o.dtype(), o.device(), numEmbeddings, dim), 0, 1, o.generator())));
    }

    public Tensor weight() {
        return parameter("weight");
    }

    /** Fixed-size bags: {@code indices} int64 [B, L], one bag per row. */
    @Override
    public Tensor forward(Tensor indices) {
        if (indices.rank() != 2) {
            throw new IllegalArgumentException("EmbeddingBag: forward(indices) takes [bags, length], got "
                    + indices.describe() + "; use forward(indices, offsets) for bags of different lengths");
        }
        long bags = indices.size(0);
        long len = indices.size(1);
        try (Tensor flat = indices.reshape(-1).contiguous();
             Tensor offsets = Tensor.arange(0, bags * len, Math.max(1, len), DType.INT64, indices.device())) {
            Tensor o = len == 0 ? Tensor.zeros(DType.INT64, indices.device(), bags) : offsets;
            try {
                return forward(flat, o, null);
            } finally {
                if (o != offsets) {
                    o.close();
                }
            }
        }
    }

    public Tensor forward(Tensor indices, Tensor offsets) {
        return forward(indices, offsets, null);
    }

    /** Bags of rows: indices int64 [n], offsets int64 [B], perSampleWeights [n] or null. */
    public Tensor forward(Tensor indices, Tensor offsets, Tensor perSampleWeights) {
        Tensor w = weight();
        if (indices.dtype() != DType.INT64 || indices.rank() != 1 || offsets.dtype() != DType.INT64
                || offsets.rank() != 1) {
            throw new IllegalArgumentException("EmbeddingBag: indices and offsets must be int64 vectors, got indices "
                    + indices.describe() + ", offsets " + offsets.describe());
        }
        long n = indices.size(0);
        if (perSampleWeights != null && (mode != Mode.SUM || !perSampleWeights.shape().equals(indices.shape())
                || perSampleWeights.dtype() != w.dtype())) {
            throw new IllegalArgumentException("EmbeddingBag: perSampleWeights need mode SUM and the shape of indices"
                    + " and the table's dtype, got " + perSampleWeights.describe() + " for indices " + indices.describe()
                    + " in mode " + mode + " (table " + w.describe() + ")");
        }
        long[] off = offsets.toLongArray();
        long[] crow = new long[off.length + 1];
        for (int b = 0; b < off.length; b++) {
            if (off[b] < 0 || off[b] > n || (b == 0 ? off[b] != 0 : off[b] < off[b - 1])) {
                throw new IllegalArgumentException("EmbeddingBag: offsets[" + b + "] = " + off[b] + " is invalid"
                        + " (offsets start at 0, do not decrease and are at most the " + n + " indices)");
            }
            crow[b] = off[b];
        }
        crow[off.length] = n;
        if (off.length == 0 && n != 0) {
            throw new IllegalArgumentException("EmbeddingBag: " + n + " indices but no bags (offsets is empty)");
        }
        try (Scope s = Scope.open()) {
            Tensor crowT = Tensor.of(crow, crow.length).to(w.device());
            Tensor values = perSampleWeights;
            if (values == null) {
                double[] v = new double[(int) n];
                for (int b = 0; b < off.length; b++) {
                    double scale = mode == Mode.MEAN ? 1.0 / Math.max(1, crow[b + 1] - crow[b]) : 1.0;
                    for (long e = crow[b]; e < crow[b + 1]; e++) {
                        v[(int) e] = scale;
                    }
                }
                values = Tensor.of(v, n).to(w.dtype(), w.device());
            }
            Tensor out;
            if (!sparse) {
                out = Sparse.csrSpmm(crowT, indices.contiguous(), values, w);
            } else {
                clearSparseState();
                Tensor idx = indices.contiguous();
                // owned by this module until the next forward or sparseGradient()
                try (Scope d = Scope.detached(); var ng = Autograd.noGrad()) {
                    lastIndices = idx.copy();
                    lastRows = Indexing.embedding(w, idx);
                }
                lastRows.requiresGrad(true);
                Tensor identity = Tensor.arange(0, n, 1, DType.INT64, w.device());
                out = Sparse.csrSpmm(crowT, identity, values, lastRows);
            }
            return s.keep(out);
        }
    }

    /**
     * The coalesced gradient of the table from the last sparse-mode forward whose backward has run
     * (null if none); the caller owns it. Clears that forward's saved rows.
     */
    public RowSparseGradient sparseGradient() {
        if (!sparse) {
            throw new IllegalStateException("EmbeddingBag: sparseGradient() needs sparse = true");
        }
        if (lastRows == null || lastRows.grad() == null) {
            clearSparseState();
            return null;
        }
        try {
            return RowSparseGradient.coalesce(lastIndices, lastRows.grad(), num);
        } finally {
            clearSparseState();
        }
    }

    private void clearSparseState() {
        if (lastRows != null) {
            lastRows.close();
            lastIndices.close();
            lastRows = null;
            lastIndices = null;
        }
    }

    @Override
    public void close() {
        clearSparseState();
        super.close();
    }

    @Override
    protected String extraRepr() {
        return num + ", " + dim + ", mode " + mode + (sparse ? ", sparse" : "");
    }
}
