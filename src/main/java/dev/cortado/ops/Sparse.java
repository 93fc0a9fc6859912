package dev.cortado.ops;

import dev.cortado.tensor.DType;
import dev.cortado.tensor.Shape;
import dev.cortado.tensor.Tensor;
import java.util.function.Supplier;

/**
 * The sparse kernel family on its component tensors: CSR sparse x dense products (SpMM and its
 * transpose), SDDMM and row softmax on a CSR pattern, top-k along an axis, and N:M structured
 * sparsity (compression by magnitude, expansion, N:M weight x dense GEMM), and BSR x dense (CPU)
 * with its SDDMM. Kernels:
 * {@code native/cpu/sparse.cpp} (contract in {@code native/include/cortado/sparse.h}).
 *
 * <p>A CSR operand {@code A [rows, cols]} travels as three tensors: {@code crow} (int64
 * {@code [rows + 1]}), {@code col} (int64 {@code [nnz]}) and {@code values} ({@code [nnz]});
 * gradients flow to the values on the same pattern. An N:M operand {@code W [rows, k]} travels as
 * {@code values} ({@code [rows, k / m * n]}) and {@code meta} (uint8, same shape: each kept entry's
 * position within its group of m). The user-facing representation with validation, conversions
 * and printing is {@code dev.cortado.sparse.SparseTensor}; these are the registry ops under it.
 * dtypes: float32, float64 and bfloat16 (float32 accumulation).
 */
public final class Sparse {
    private Sparse() {
    }

    /** SpMM of {@code A^T}: the number of columns of A (the rows of the result). */
    public record Transposed(long cols) {
        public Transposed {
            if (cols < 0) {
                throw new IllegalArgumentException("csr_spmm_t: cols = " + cols + " is negative");
            }
        }
    }

    /** Top-k options: {@code k} elements along {@code dim}, the largest (or smallest), sorted. */
    public record TopK(int k, int dim, boolean largest) {
    }

    /** The gradient of top-k: the length of the axis it selected from. */
    public record TopKGrad(int dim, long length) {
    }

    /** An N:M pattern: n kept of every m consecutive entries along a row, {@code 1 <= n < m <= 16}. */
    public record NM(int n, int m) {
        public NM {
            if (n < 1 || m > 16 || n >= m) {
                throw new IllegalArgumentException("N:M = " + n + ":" + m + ", need 1 <= N < M <= 16");
            }
        }

        @Override
        public String toString() {
            return n + ":" + m;
        }
    }

    /**
     * Which kernel runs a CSR {@code A b} ({@link #csrSpmm(Tensor, Tensor, Tensor, Tensor, SpmmBackend)}).
     * The gradients always run Cortado's kernels.
     */
    public enum SpmmBackend {
        /** Cortado's kernels: on CUDA the Sputnik-style subwarp kernel with the row swizzle. */
        CORTADO,
        /**
         * cuSPARSE's {@code cusparseSpMM} (CSR_ALG2), CUDA tensors only: a baseline for benchmarks.
         * The library is loaded at run time; without it (or on the CPU) the call throws an exception
         * that says why.
         */
        CUSPARSE
    }

    private static final DType[] FLOATS = {DType.FLOAT32, DType.FLOAT64, DType.BFLOAT16};

    // ------------------------------------------------------------------ CSR
    /** {@code A b} for CSR A; the attribute picks the backend (null: {@link SpmmBackend#CORTADO}). */
    public static final Op<SpmmBackend> CSR_SPMM_OP = Op.<SpmmBackend>declare("csr_spmm")
            .inputs("crow", "col", "values", "b")
            .shape((op, a, in) -> {
                long rows = checkCsr(op, in[0], in[1], in[2]);
                checkDense(op, "b", in[3], in[2].dtype());
                return Op.one(Shape.of(rows, in[3].size(1)), in[2].dtype());
            })
            .kernels((a, in, out) -> {
                if (a == SpmmBackend.CUSPARSE) {
                    cusparseSpmm(in[0], in[1], in[2], in[3], out[0]);
                } else {
                    spmm(0, in[0], in[1], in[2], in[3], in[3].size(0), out[0]);
                }
            })
            .backward(Op.Saves.INPUTS, (a, sv, g) -> new Tensor[] {null, null,
                sv.needsGradient(2) ? Sparse.CSR_SDDMM_OP.call(null, sv.input(0), sv.input(1), g[0], sv.input(3)) : null,
                sv.needsGradient(3) ? Sparse.CSR_SPMM_T_OP.call(new Transposed(sv.inputShape(3).size(0)), sv.input(0),
                        sv.input(1), sv.input(2), g[0]) : null})
            .register();

    public static final Op<Transposed> CSR_SPMM_T_OP = Op.<Transposed>declare("csr_spmm_t")
            .inputs("crow", "col", "values", "b")
            .shape((op, a, in) -> {
                long rows = checkCsr(op, in[0], in[1], in[2]);
                checkDense(op, "b", in[3], in[2].dtype());
                if (in[3].size(0) != rows) {
                    throw op.error("b " + in[3].describe() + " must have " + rows + " rows (the rows of A) for A^T b");
                }
                return Op.one(Shape.of(a.cols(), in[3].size(1)), in[2].dtype());
            })
            .kernels((a, in, out) -> spmm(1, in[0], in[1], in[2], in[3], a.cols(), out[0]))
            .backward(Op.Saves.INPUTS, (a, sv, g) -> new Tensor[] {null, null,
                sv.needsGradient(2) ? Sparse.CSR_SDDMM_OP.call(null, sv.input(0), sv.input(1), sv.input(3), g[0]) : null,
                sv.needsGradient(3) ? Sparse.CSR_SPMM_OP.call(null, sv.input(0), sv.input(1), sv.input(2), g[0]) : null})
            .register();

    public static final Op<Void> CSR_SDDMM_OP = Op.<Void>declare("csr_sddmm")
            .inputs("crow", "col", "x", "y")
            .shape((op, a, in) -> {
                long rows = checkIndices(op, in[0], in[1]);
                checkDense(op, "x", in[2], in[2].dtype());
                checkDense(op, "y", in[3], in[2].dtype());
                if (in[2].size(0) != rows || in[3].size(1) != in[2].size(1)) {
                    throw op.error("x " + in[2].describe() + " must be [" + rows + ", d] (rows of the pattern) and y "
                            + in[3].describe() + " [cols, d] with the same d");
                }
                return Op.one(Shape.of(in[1].size(0)), in[2].dtype());
            })
            .kernels((a, in, out) -> sddmm(in[0], in[1], in[2], in[3], out[0]))
            .backward(Op.Saves.INPUTS, (a, sv, g) -> new Tensor[] {null, null,
                sv.needsGradient(2) ? Sparse.CSR_SPMM_OP.call(null, sv.input(0), sv.input(1), g[0], sv.input(3)) : null,
                sv.needsGradient(3) ? Sparse.CSR_SPMM_T_OP.call(new Transposed(sv.inputShape(3).size(0)), sv.input(0),
                        sv.input(1), g[0], sv.input(2)) : null})
            .register();

    public static final Op<Void> CSR_SOFTMAX_OP = Op.<Void>declare("csr_softmax")
            .inputs("crow", "values")
            .shape((op, a, in) -> {
                checkCrow(op, in[0]);
                checkValues(op, in[1]);
                return Op.one(in[1].shape(), in[1].dtype());
            })
            .kernels((a, in, out) -> softmax(in[0], in[1], out[0]))
            .backward(Op.Saves.INPUTS_AND_OUTPUTS, (a, sv, g) -> new Tensor[] {null,
                Sparse.CSR_SOFTMAX_BACKWARD_OP.call(null, sv.input(0), sv.output(0), g[0])})
            .register();

    public static final Op<Void> CSR_SOFTMAX_BACKWARD_OP = Op.<Void>declare("csr_softmax_backward")
            .inputs("crow", "y", "dy")
            .shape((op, a, in) -> {
                checkCrow(op, in[0]);
                checkValues(op, in[1]);
                op.requireLike("dy", in[2], "y", in[1]);
                return Op.one(in[1].shape(), in[1].dtype());
            })
            .kernels((a, in, out) -> softmaxBackward(in[0], in[1], in[2], out[0]))
            .register();

    // ------------------------------------------------------------------ top-k
    public static final Op<TopK> TOPK_OP = Op.<TopK>declare("topk")
            .inputs("x")
            .shape((op, a, in) -> {
                Tensor x = in[0];
                op.requireDType("x", x, FLOATS);
                int d = axis(op, a.dim(), x);
                long len = x.rank() == 0 ? 1 : x.size(d);
                if (a.k() < 0 || a.k() > len) {
                    throw op.error("k = " + a.k() + " is outside [0, " + len + "] for dim " + a.dim() + " of x " + x.describe());
                }
                long[] dims = x.dims();
                if (dims.length > 0) {
                    dims[d] = a.k();
                }
                Shape s = Shape.of(dims);
                return new TensorSpec[] {new TensorSpec(s, x.dtype()), new TensorSpec(s, DType.INT64)};
            })
            .kernels(Sparse::topk)
            .backward(Op.Saves.OUTPUTS, (a, sv, g) -> {
                int d = sv.inputShape(0).rank() == 0 ? 0 : Math.floorMod(a.dim(), sv.inputShape(0).rank());
                long len = sv.inputShape(0).rank() == 0 ? 1 : sv.inputShape(0).size(d);
                return new Tensor[] {Sparse.TOPK_BACKWARD_OP.call(new TopKGrad(a.dim(), len), g[0], sv.output(1))};
            })
            .register();

    public static final Op<TopKGrad> TOPK_BACKWARD_OP = Op.<TopKGrad>declare("topk_backward")
            .inputs("dvalues", "indices")
            .shape((op, a, in) -> {
                op.requireDType("dvalues", in[0], FLOATS);
                op.requireDType("indices", in[1], DType.INT64);
                if (!in[0].shape().equals(in[1].shape())) {
                    throw op.error("indices " + in[1].describe() + " must have the shape of dvalues " + in[0].describe());
                }
                int d = axis(op, a.dim(), in[0]);
                long[] dims = in[0].dims();
                if (dims.length > 0) {
                    dims[d] = a.length();
                }
                return Op.one(Shape.of(dims), in[0].dtype());
            })
            .kernels(Sparse::topkBackward)
            .register();

    // ------------------------------------------------------------------ N:M
    public static final Op<NM> NM_COMPRESS_OP = Op.<NM>declare("nm_compress")
            .inputs("x")
            .shape((op, a, in) -> {
                Tensor x = in[0];
                op.requireDType("x", x, FLOATS);
                if (x.rank() != 2 || x.size(1) % a.m() != 0) {
                    throw op.error("x " + x.describe() + " must be [rows, k] with k a multiple of M for " + a);
                }
                Shape s = Shape.of(x.size(0), x.size(1) / a.m() * a.n());
                return new TensorSpec[] {new TensorSpec(s, x.dtype()), new TensorSpec(s, DType.UINT8)};
            })
            .kernels((a, in, out) -> {
                Launch l = Launch.on(out[0]);
                try (Tensor x = in[0].contiguous()) {
                    check(l, l.kernels.nmCompress(x.dtype().code(), x.size(0), x.size(1), a.n(), a.m(),
                            x.dataAddress(), out[0].dataAddress(), out[1].dataAddress(), l.stream), () -> "nm_compress(" + x.describe() + ", " + a + ")");
                }
            })
            .backward(Op.Saves.OUTPUTS, (a, sv, g) -> new Tensor[] {
                Sparse.NM_DECOMPRESS_OP.call(a, g[0], sv.output(1))})
            .register();

    public static final Op<NM> NM_DECOMPRESS_OP = Op.<NM>declare("nm_decompress")
            .inputs("values", "meta")
            .shape((op, a, in) -> {
                long k = checkNm(op, a, in[0], in[1]);
                return Op.one(Shape.of(in[0].size(0), k), in[0].dtype());
            })
            .kernels((a, in, out) -> {
                Launch l = Launch.on(out[0]);
                try (Tensor v = in[0].contiguous(); Tensor meta = in[1].contiguous()) {
                    check(l, l.kernels.nmDecompress(v.dtype().code(), out[0].size(0), out[0].size(1), a.n(), a.m(),
                            v.dataAddress(), meta.dataAddress(), out[0].dataAddress(), l.stream),
                            () -> "nm_decompress(" + v.describe() + ", " + meta.describe() + ", " + a + ")");
                }
            })
            .register();

    public static final Op<NM> NM_MATMUL_OP = Op.<NM>declare("nm_matmul")
            .inputs("values", "meta", "b")
            .shape((op, a, in) -> {
                long k = checkNm(op, a, in[0], in[1]);
                checkDense(op, "b", in[2], in[0].dtype());
                if (in[2].size(0) != k) {
                    throw op.error("b " + in[2].describe() + " must have k = " + k + " rows for the " + a + " operand "
                            + in[0].describe());
                }
                return Op.one(Shape.of(in[0].size(0), in[2].size(1)), in[0].dtype());
            })
            .kernels((a, in, out) -> {
                Launch l = Launch.on(out[0]);
                try (Tensor v = in[0].contiguous(); Tensor meta = in[1].contiguous(); Tensor b = in[2].contiguous()) {
                    check(l, l.kernels.nmMatmul(v.dtype().code(), v.size(0), b.size(0), b.size(1), a.n(), a.m(),
                            v.dataAddress(), meta.dataAddress(), b.dataAddress(), out[0].dataAddress(), l.stream),
                            () -> "nm_matmul(" + v.describe() + ", " + meta.describe() + ", " + b.describe() + ", " + a + ")");
                }
            })
            .backward(Op.Saves.INPUTS, (a, sv, g) -> {
                Tensor[] d = Sparse.NM_MATMUL_BACKWARD_OP.callMulti(a, sv.input(0), sv.input(1), sv.input(2), g[0]);
                return new Tensor[] {d[0], null, d[1]};
            })
            .register();

    public static final Op<NM> NM_MATMUL_BACKWARD_OP = Op.<NM>declare("nm_matmul_backward")
            .inputs("values", "meta", "b", "dc")
            .shape((op, a, in) -> {
                checkNm(op, a, in[0], in[1]);
                checkDense(op, "b", in[2], in[0].dtype());
                checkDense(op, "dc", in[3], in[0].dtype());
                if (in[3].size(0) != in[0].size(0) || in[3].size(1) != in[2].size(1)) {
                    throw op.error("dc " + in[3].describe() + " must be [" + in[0].size(0) + ", " + in[2].size(1) + "]");
                }
                return new TensorSpec[] {new TensorSpec(in[0].shape(), in[0].dtype()), new TensorSpec(in[2].shape(), in[0].dtype())};
            })
            .kernels((a, in, out) -> {
                Launch l = Launch.on(out[0]);
                try (Tensor v = in[0].contiguous(); Tensor meta = in[1].contiguous(); Tensor b = in[2].contiguous();
                     Tensor dc = in[3].contiguous()) {
                    check(l, l.kernels.nmMatmulBackward(v.dtype().code(), v.size(0), b.size(0), b.size(1), a.n(), a.m(),
                            v.dataAddress(), meta.dataAddress(), b.dataAddress(), dc.dataAddress(), out[0].dataAddress(),
                            out[1].dataAddress(), l.stream), () -> "nm_matmul_backward(" + v.describe() + ", " + b.describe() + ", " + a + ")");
                }
            })
            .register();

    // ------------------------------------------------------------------ BSR (CPU only for now)
    /** BSR SDDMM: the block size of the output blocks. */
    public record Block(int size) {
        public Block {
            if (size < 1) {
                throw new IllegalArgumentException("bsr: block size " + size + " must be positive");
            }
        }
    }

    public static final Op<Void> BSR_SPMM_OP = Op.<Void>declare("bsr_spmm")
            .inputs("crow", "col", "values", "b")
            .shape((op, a, in) -> {
                long rows = checkBsr(op, in[0], in[1], in[2]);
                checkDense(op, "b", in[3], in[2].dtype());
                requireBlocks(op, "b", in[3], in[2].size(1));
                return Op.one(Shape.of(rows, in[3].size(1)), in[2].dtype());
            })
            .kernels((a, in, out) -> bsrSpmm(0, in[0], in[1], in[2], in[3], in[3].size(0), out[0]))
            .backward(Op.Saves.INPUTS, (a, sv, g) -> new Tensor[] {null, null,
                sv.needsGradient(2) ? Sparse.BSR_SDDMM_OP.call(new Block((int) sv.inputShape(2).size(1)), sv.input(0),
                        sv.input(1), g[0], sv.input(3)) : null,
                sv.needsGradient(3) ? Sparse.BSR_SPMM_T_OP.call(new Transposed(sv.inputShape(3).size(0)), sv.input(0),
                        sv.input(1), sv.input(2), g[0]) : null})
            .register();

    public static final Op<Transposed> BSR_SPMM_T_OP = Op.<Transposed>declare("bsr_spmm_t")
            .inputs("crow", "col", "values", "b")
            .shape((op, a, in) -> {
                long rows = checkBsr(op, in[0], in[1], in[2]);
                checkDense(op, "b", in[3], in[2].dtype());
                if (in[3].size(0) != rows || a.cols() % in[2].size(1) != 0) {
                    throw op.error("b " + in[3].describe() + " must have " + rows + " rows (the rows of A) and cols "
                            + a.cols() + " a multiple of the block size " + in[2].size(1));
                }
                return Op.one(Shape.of(a.cols(), in[3].size(1)), in[2].dtype());
            })
            .kernels((a, in, out) -> bsrSpmm(1, in[0], in[1], in[2], in[3], a.cols(), out[0]))
            .backward(Op.Saves.INPUTS, (a, sv, g) -> new Tensor[] {null, null,
                sv.needsGradient(2) ? Sparse.BSR_SDDMM_OP.call(new Block((int) sv.inputShape(2).size(1)), sv.input(0),
                        sv.input(1), sv.input(3), g[0]) : null,
                sv.needsGradient(3) ? Sparse.BSR_SPMM_OP.call(null, sv.input(0), sv.input(1), sv.input(2), g[0]) : null})
            .register();

    public static final Op<Block> BSR_SDDMM_OP = Op.<Block>declare("bsr_sddmm")
            .inputs("crow", "col", "x", "y")
            .shape((op, a, in) -> {
                long rows = checkIndices(op, in[0], in[1]) * a.size();
                checkDense(op, "x", in[2], in[2].dtype());
                checkDense(op, "y", in[3], in[2].dtype());
                requireBlocks(op, "y", in[3], a.size());
                if (in[2].size(0) != rows || in[3].size(1) != in[2].size(1)) {
                    throw op.error("x " + in[2].describe() + " must be [" + rows + ", d] (the rows of the pattern) and y "
                            + in[3].describe() + " [cols, d] with the same d");
                }
                return Op.one(Shape.of(in[1].size(0), a.size(), a.size()), in[2].dtype());
            })
            .kernels((a, in, out) -> bsrSddmm(a, in[0], in[1], in[2], in[3], out[0]))
            .backward(Op.Saves.INPUTS, (a, sv, g) -> new Tensor[] {null, null,
                sv.needsGradient(2) ? Sparse.BSR_SPMM_OP.call(null, sv.input(0), sv.input(1), g[0], sv.input(3)) : null,
                sv.needsGradient(3) ? Sparse.BSR_SPMM_T_OP.call(new Transposed(sv.inputShape(3).size(0)), sv.input(0),
                        sv.input(1), g[0], sv.input(2)) : null})
            .register();

    // ------------------------------------------------------------------ entry points
    /** {@code A b} for the CSR matrix (crow, col, values) with {@code b [cols, n]}. */
    public static Tensor csrSpmm(Tensor crow, Tensor col, Tensor values, Tensor b) {
        return Sparse.CSR_SPMM_OP.call(null, crow, col, values, b);
    }

    /**
     * {@code A b} for the CSR matrix (crow, col, values) with {@code b [cols, n]}, run by {@code backend}
     * (the gradients by Cortado's kernels either way).
     */
    public static Tensor csrSpmm(Tensor crow, Tensor col, Tensor values, Tensor b, SpmmBackend backend) {
        return Sparse.CSR_SPMM_OP.call(java.util.Objects.requireNonNull(backend, "backend"), crow, col, values, b);
    }

    /** {@code A^T b} for the CSR matrix (crow, col, values) of {@code cols} columns, {@code b [rows, n]}. */
    public static Tensor csrSpmmTransposed(Tensor crow, Tensor col, Tensor values, long cols, Tensor b) {
        return Sparse.CSR_SPMM_T_OP.call(new Transposed(cols), crow, col, values, b);
    }

    /** {@code A b} for the BSR matrix (crow, col over blocks, values [nnzb, block, block]) with {@code b [cols, n]}. */
    public static Tensor bsrSpmm(Tensor crow, Tensor col, Tensor values, Tensor b) {
        return BSR_SPMM_OP.call(null, crow, col, values, b);
    }

    /** The entries of {@code x y^T} on the CSR pattern (crow, col): {@code [nnz]}. */
    public static Tensor csrSddmm(Tensor crow, Tensor col, Tensor x, Tensor y) {
        return Sparse.CSR_SDDMM_OP.call(null, crow, col, x, y);
    }

    /** Softmax over each row's stored values (absent entries count as -inf). */
    public static Tensor csrSoftmax(Tensor crow, Tensor values) {
        return CSR_SOFTMAX_OP.call(null, crow, values);
    }

    /** The k largest (or smallest) elements along {@code dim}, sorted: {values, int64 indices}. */
    public static Tensor[] topk(Tensor x, int k, int dim, boolean largest) {
        return TOPK_OP.callMulti(new TopK(k, dim, largest), x);
    }

    /** N:M compression by magnitude of {@code x [rows, k]}: {values, uint8 meta}. */
    public static Tensor[] nmCompress(Tensor x, NM nm) {
        return NM_COMPRESS_OP.callMulti(nm, x);
    }

    /** The dense {@code [rows, k]} matrix of an N:M operand. */
    public static Tensor nmDecompress(Tensor values, Tensor meta, NM nm) {
        return Sparse.NM_DECOMPRESS_OP.call(nm, values, meta);
    }

    /** {@code W b} for the N:M operand W (values, meta) and {@code b [k, ncols]}. */
    public static Tensor nmMatmul(Tensor values, Tensor meta, NM nm, Tensor b) {
        return NM_MATMUL_OP.call(nm, values, meta, b);
    }

    // ------------------------------------------------------------------ checks
    private static long checkCrow(Op<?> op, Tensor crow) {
        if (crow.dtype() != DType.INT64 || crow.rank() != 1 || crow.size(0) < 1) {
            throw op.error("crow " + crow.describe() + " must be int64 [rows + 1]");
        }
        return crow.size(0) - 1;
    }

    private static long checkIndices(Op<?> op, Tensor crow, Tensor col) {
        long rows = checkCrow(op, crow);
        if (col.dtype() != DType.INT64 || col.rank() != 1) {
            throw op.error("col " + col.describe() + " must be int64 [nnz]");
        }
        return rows;
    }

    private static void checkValues(Op<?> op, Tensor values) {
        op.requireDType("values", values, FLOATS);
        if (values.rank() != 1) {
            throw op.error("values " + values.describe() + " must be [nnz]");
        }
    }

    private static long checkCsr(Op<?> op, Tensor crow, Tensor col, Tensor values) {
        long rows = checkIndices(op, crow, col);
        checkValues(op, values);
        if (values.size(0) != col.size(0)) {
            throw op.error("values " + values.describe() + " and col " + col.describe() + " must both have nnz elements");
        }
        return rows;
    }

    private static void checkDense(Op<?> op, String name, Tensor t, DType dtype) {
        op.requireDType(name, t, FLOATS);
        if (t.rank() != 2) {
            throw op.error(name + " " + t.describe() + " must be a matrix (rank 2)");
        }
        if (t.dtype() != dtype) {
            throw op.error(name + " " + t.describe() + " must have the sparse operand's dtype " + dtype);
        }
    }

    private static long checkNm(Op<?> op, NM a, Tensor values, Tensor meta) {
        op.requireDType("values", values, FLOATS);
        if (values.rank() != 2 || values.size(1) % a.n() != 0) {
            throw op.error("values " + values.describe() + " must be [rows, k / M * N] for " + a);
        }
        if (meta.dtype() != DType.UINT8 || !meta.shape().equals(values.shape())) {
            throw op.error("meta " + meta.describe() + " must be uint8 of the shape of values " + values.describe());
        }
        return values.size(1) / a.n() * a.m();
    }

    private static int axis(Op<?> op, int dim, Tensor x) {
        int r = Math.max(x.rank(), 1);
        if (dim < -r || dim >= r) {
            throw op.error("dim " + dim + " is out of range for x " + x.describe());
        }
        return Math.floorMod(dim, r);
    }

    private static void check(Launch l, int status, Supplier<String> context) {
        if (status != 0) {
            throw l.failure(status, context.get());
        }
    }

    private static long checkBsr(Op<?> op, Tensor crow, Tensor col, Tensor values) {
        long blockRows = checkIndices(op, crow, col);
        op.requireDType("values", values, FLOATS);
        if (values.rank() != 3 || values.size(1) != values.size(2) || values.size(1) < 1 || values.size(0) != col.size(0)) {
            throw op.error("values " + values.describe() + " must be [nnzb, b, b] with nnzb = " + col.size(0)
                    + " (the block column indices " + col.describe() + ")");
        }
        return blockRows * values.size(1);
    }

    private static void requireBlocks(Op<?> op, String name, Tensor t, long block) {
        if (t.size(0) % block != 0) {
            throw op.error(name + " " + t.describe() + " must have a multiple of the block size " + block + " rows");
        }
    }

    private static void bsrSpmm(int trans, Tensor crow0, Tensor col0, Tensor values0, Tensor b0, long cols, Tensor out) {
        Launch l = Launch.on(out);
        try (Tensor crow = crow0.contiguous(); Tensor col = col0.contiguous(); Tensor v = values0.contiguous();
             Tensor b = b0.contiguous()) {
            long block = v.size(1);
            long rows = (crow.size(0) - 1) * block;
            check(l, l.kernels.bsrSpmm(v.dtype().code(), trans, rows, cols, block, b.size(1), col.size(0), crow.dataAddress(),
                    col.dataAddress(), v.dataAddress(), b.dataAddress(), out.dataAddress(), l.stream),
                    () -> (trans == 0 ? "bsr_spmm(" : "bsr_spmm_t(") + "crow " + crow.describe() + ", col " + col.describe()
                            + ", values " + v.describe() + ", b " + b.describe() + ")");
        }
    }

    private static void bsrSddmm(Block a, Tensor crow0, Tensor col0, Tensor x0, Tensor y0, Tensor out) {
        Launch l = Launch.on(out);
        try (Tensor crow = crow0.contiguous(); Tensor col = col0.contiguous(); Tensor x = x0.contiguous();
             Tensor y = y0.contiguous()) {
            check(l, l.kernels.bsrSddmm(x.dtype().code(), x.size(0), y.size(0), a.size(), x.size(1), col.size(0),
                    crow.dataAddress(), col.dataAddress(), x.dataAddress(), y.dataAddress(), out.dataAddress(), l.stream),
                    () -> "bsr_sddmm(crow " + crow.describe() + ", col " + col.describe() + ", x " + x.describe() + ", y "
                            + y.describe() + ", block " + a.size() + ")");
        }
    }

    // ------------------------------------------------------------------ kernel bodies
    private static void spmm(int trans, Tensor crow0, Tensor col0, Tensor values0, Tensor b0, long cols, Tensor out) {
        Launch l = Launch.on(out);
        try (Tensor crow = crow0.contiguous(); Tensor col = col0.contiguous(); Tensor v = values0.contiguous();
             Tensor b = b0.contiguous()) {
            long rows = crow.size(0) - 1;
            check(l, l.kernels.csrSpmm(v.dtype().code(), trans, rows, cols, b.size(1), col.size(0), crow.dataAddress(),
                    col.dataAddress(), v.dataAddress(), b.dataAddress(), out.dataAddress(), l.stream),
                    () -> (trans == 0 ? "csr_spmm(" : "csr_spmm_t(") + "crow " + crow.describe() + ", col " + col.describe()
                            + ", values " + v.describe() + ", b " + b.describe() + ")");
        }
    }

    private static void cusparseSpmm(Tensor crow0, Tensor col0, Tensor values0, Tensor b0, Tensor out) {
        Launch l = Launch.on(out);
        try (Tensor crow = crow0.contiguous(); Tensor col = col0.contiguous(); Tensor v = values0.contiguous();
             Tensor b = b0.contiguous()) {
            check(l, l.kernels.cusparseCsrSpmm(v.dtype().code(), crow.size(0) - 1, b.size(0), b.size(1), col.size(0),
                    crow.dataAddress(), col.dataAddress(), v.dataAddress(), b.dataAddress(), out.dataAddress(), l.stream),
                    () -> "csr_spmm(backend CUSPARSE; crow " + crow.describe() + ", col " + col.describe() + ", values "
                            + v.describe() + ", b " + b.describe() + ")");
        }
    }

    private static void sddmm(Tensor crow0, Tensor col0, Tensor x0, Tensor y0, Tensor out) {
        Launch l = Launch.on(out);
        try (Tensor crow = crow0.contiguous(); Tensor col = col0.contiguous(); Tensor x = x0.contiguous();
             Tensor y = y0.contiguous()) {
            check(l, l.kernels.csrSddmm(x.dtype().code(), x.size(0), y.size(0), x.size(1), col.size(0), crow.dataAddress(),
                    col.dataAddress(), x.dataAddress(), y.dataAddress(), out.dataAddress(), l.stream),
                    () -> "csr_sddmm(crow " + crow.describe() + ", col " + col.describe() + ", x " + x.describe() + ", y "
                            + y.describe() + ")");
        }
    }

    private static void softmax(Tensor crow0, Tensor x0, Tensor out) {
        Launch l = Launch.on(out);
        try (Tensor crow = crow0.contiguous(); Tensor x = x0.contiguous()) {
            check(l, l.kernels.csrSoftmax(x.dtype().code(), crow.size(0) - 1, x.size(0), crow.dataAddress(),
                    x.dataAddress(), out.dataAddress(), l.stream), () -> "csr_softmax(crow " + crow.describe() + ", values " + x.describe() + ")");
        }
    }

    private static void softmaxBackward(Tensor crow0, Tensor y0, Tensor dy0, Tensor out) {
        Launch l = Launch.on(out);
        try (Tensor crow = crow0.contiguous(); Tensor y = y0.contiguous(); Tensor dy = dy0.contiguous()) {
            check(l, l.kernels.csrSoftmaxBackward(y.dtype().code(), crow.size(0) - 1, y.size(0), crow.dataAddress(),
                    y.dataAddress(), dy.dataAddress(), out.dataAddress(), l.stream),
                    () -> "csr_softmax_backward(crow " + crow.describe() + ", y " + y.describe() + ")");
        }
    }

    /** [outer, len, inner] around the axis of x (rank 0: one line of one element). */
    private static long[] split(long[] dims, int d) {
        if (dims.length == 0) {
            return new long[] {1, 1, 1};
        }
        long outer = 1;
        long inner = 1;
        for (int i = 0; i < d; i++) {
            outer *= dims[i];
        }
        for (int i = d + 1; i < dims.length; i++) {
            inner *= dims[i];
        }
        return new long[] {outer, dims[d], inner};
    }

    private static void topk(TopK a, Tensor[] in, Tensor[] out) {
        Launch l = Launch.on(out[0]);
        try (Tensor x = in[0].contiguous()) {
            int d = x.rank() == 0 ? 0 : Math.floorMod(a.dim(), x.rank());
            long[] s = split(x.dims(), d);
            check(l, l.kernels.topk(x.dtype().code(), s[0], s[1], s[2], a.k(), a.largest() ? 1 : 0, x.dataAddress(),
                    out[0].dataAddress(), out[1].dataAddress(), l.stream), () -> "topk(" + x.describe() + ", k " + a.k() + ", dim "
                    + a.dim() + ")");
        }
    }

    private static void topkBackward(TopKGrad a, Tensor[] in, Tensor[] out) {
        Launch l = Launch.on(out[0]);
        try (Tensor g = in[0].contiguous(); Tensor idx = in[1].contiguous()) {
            int d = g.rank() == 0 ? 0 : Math.floorMod(a.dim(), g.rank());
            long[] s = split(out[0].dims(), d);
            long k = g.rank() == 0 ? 1 : g.size(d);
            check(l, l.kernels.topkBackward(g.dtype().code(), s[0], s[1], s[2], k, g.dataAddress(), idx.dataAddress(),
                    out[0].dataAddress(), l.stream), () -> "topk_backward(" + g.describe() + ", indices " + idx.describe() + ")");
        }
    }
}
