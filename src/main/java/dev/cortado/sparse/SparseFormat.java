package dev.cortado.sparse;

import dev.cortado.ops.Sparse.NM;
import dev.cortado.tensor.Tensor;

/**
 * How a trained weight matrix is stored for sparse inference: {@link #nm N:M} (values and
 * positions, run by {@code nm_matmul}) or {@link #csr() CSR} (the non-zero entries, run by
 * {@code csr_spmm}). {@link #compress} turns a dense weight {@code [out, in]} into that layout.
 */
public sealed interface SparseFormat {
    /** N:M: every group of m consecutive weights of a row keeps its n largest magnitudes (exact for an N:M-trained weight). */
    static SparseFormat nm(int n, int m) {
        return new Nm(new NM(n, m));
    }

    /** CSR of the non-zero entries (exact for any weight; worthwhile when most are zero). */
    static SparseFormat csr() {
        return Csr.INSTANCE;
    }

    /** The sparse matrix of {@code dense [rows, cols]} in this format (a new tensor; the caller closes it). */
    SparseTensor compress(Tensor dense);

    /** N:M; see {@link SparseFormat#nm}. */
    record Nm(NM pattern) implements SparseFormat {
        @Override
        public SparseTensor compress(Tensor dense) {
            if (dense.rank() != 2 || dense.size(1) % pattern.m() != 0) {
                throw new IllegalArgumentException("SparseFormat " + pattern + ": the weight " + dense.describe()
                        + " must be [out, in] with in a multiple of " + pattern.m());
            }
            return SparseTensor.fromDense(dense).toNm(pattern.n(), pattern.m());
        }

        @Override
        public String toString() {
            return pattern.toString();
        }
    }

    /** CSR; see {@link SparseFormat#csr()}. */
    enum Csr implements SparseFormat {
        INSTANCE;

        @Override
        public SparseTensor compress(Tensor dense) {
            return SparseTensor.fromDense(dense).toCsr();
        }

        @Override
        public String toString() {
            return "csr";
        }
    }
}
