/**
 * Sparse matrices and what is built on them: {@link dev.cortado.sparse.SparseTensor} (COO, CSR,
 * BSR and N:M layouts over dense component tensors, validated indices, conversions from and to
 * dense by mask or magnitude, printing, sparse x dense products through the registry ops of
 * {@link dev.cortado.ops.Sparse}) and magnitude pruning with the gradual schedule of Zhu and
 * Gupta ({@link dev.cortado.sparse.MagnitudePruning}). See docs/sparse.md.
 */
package dev.cortado.sparse;
