package dev.cortado.tensor;

/**
 * How a tensor's elements are laid out in its storage. A {@link Tensor} is always dense
 * {@link #STRIDED}; the sparse layouts are carried by {@code dev.cortado.sparse.SparseTensor}, a
 * separate type built from dense component tensors (indices and values), so a dense op cannot be
 * handed a sparse operand at all: the sparse products are {@code SparseTensor.matmul} and the ops
 * of {@code dev.cortado.ops.Sparse}. Every op still checks the layout of its inputs
 * ({@link Tensor#requireStrided(String)}) instead of assuming it.
 */
public enum Layout {
    /** Dense: element (i0, i1, ...) lives at offset + sum(i_k * stride_k). */
    STRIDED,
    /** Coordinate list: row and column indices and a value per stored entry (duplicates allowed until coalesced). */
    COO,
    /** Compressed sparse rows: row pointers, sorted distinct column indices per row, values. */
    CSR,
    /** Block CSR: CSR over square blocks of a fixed size, one dense block of values per stored block. */
    BSR,
    /** N:M structured: n kept entries in every m consecutive along a row, values plus each one's position in its group. */
    NM
}
