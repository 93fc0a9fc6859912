/**
 * Sparse matrices and what is built on them: {@link dev.cortado.sparse.SparseTensor} (COO, CSR,
 * BSR and N:M layouts over dense component tensors, validated indices, conversions from and to
 * dense by mask or magnitude, printing, sparse x dense products through the registry ops of
 * {@link dev.cortado.ops.Sparse}) and magnitude pruning with the gradual schedule of Zhu and
 * Gupta ({@link dev.cortado.sparse.MagnitudePruning}), Deep Gradient Compression for data-parallel
 * gradient exchange ({@link dev.cortado.sparse.DeepGradientCompression},
 * {@link dev.cortado.sparse.CompressedGradients}, {@link dev.cortado.sparse.DataParallelSimulation}),
 * and row-sparse gradients of embedding tables with the optimizer that updates only the touched
 * rows ({@link dev.cortado.sparse.RowSparseGradient}, {@link dev.cortado.sparse.RowSparseOptimizer}).
 * See docs/sparse.md.
 */
package dev.cortado.sparse;
