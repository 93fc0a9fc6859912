package dev.cortado.ops.opinfo;

import static dev.cortado.ops.opinfo.Gen.u;

import dev.cortado.ops.Sparse.Block;
import dev.cortado.ops.Sparse.NM;
import dev.cortado.ops.Sparse.TopK;
import dev.cortado.ops.Sparse.TopKGrad;
import dev.cortado.ops.Sparse.Transposed;
import dev.cortado.ops.SparseRef;
import dev.cortado.ops.SparseRef.Pattern;
import dev.cortado.tensor.DType;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;

/**
 * The sparse family: CSR SpMM (and its transpose), SDDMM, row softmax, top-k, N:M compression,
 * expansion and GEMM. Patterns: odd sizes with an empty row, a single row, no stored entries at
 * all, a one-column dense operand and an empty one; dense operands also as transposed views.
 * Tolerances: float32 1e-5 and bfloat16 1e-2 (8-bit significand, inputs and outputs rounded)
 * relative to the largest reference value; float64 1e-10.
 */
final class SparseSamples {
    private SparseSamples() {
    }

    private static final String F = "sparse";
    private static final double F32 = 1e-5;
    private static final double BF16 = 1e-2;

    /** A pattern as the two index inputs. */
    private static Arg crow(Pattern p) {
        return Arg.index(p.crow(), p.rows() + 1);
    }

    private static Arg col(Pattern p) {
        return Arg.index(p.col(), p.nnz());
    }

    private static Arg meta(double[] m, long... dims) {
        return new Arg(m, dims, DType.UINT8, false, false, true);
    }

    /** (label, rows, cols, density, empty row, n) of the CSR samples. */
    private record Geo(String label, int rows, int cols, double density, int emptyRow, int n, boolean view) {
    }

    private static final List<Geo> GEOS = List.of(
            new Geo("7x9 at 40%, an empty row", 7, 9, 0.4, 3, 5, false),
            new Geo("5x6, b a transposed view", 5, 6, 0.5, -1, 4, true),
            new Geo("one row, n = 1", 1, 8, 0.6, -1, 1, false),
            new Geo("no stored entries", 4, 3, 0.0, -1, 3, false),
            new Geo("n = 0", 3, 4, 0.5, -1, 0, false));

    private interface CsrSample {
        Sample make(Geo g, Pattern p, Random r, DType t);
    }

    private static List<Sample> csr(Random r, DType t, CsrSample s) {
        List<Sample> out = new ArrayList<>();
        for (Geo g : GEOS) {
            out.add(s.make(g, SparseRef.pattern(r, g.rows(), g.cols(), g.density(), g.emptyRow()), r, t));
        }
        return out;
    }

    /** (label, block rows, block cols, density, empty block row, block size, n) of the BSR samples. */
    private record BGeo(String label, int rows, int cols, double density, int emptyRow, int block, int n, boolean view) {
    }

    private static final List<BGeo> BGEOS = List.of(
            new BGeo("3x4 blocks of 2 at 50%, an empty block row", 3, 4, 0.5, 1, 2, 5, false),
            new BGeo("2x3 blocks of 3, a transposed view", 2, 3, 0.6, -1, 3, 4, true),
            new BGeo("blocks of 1, n = 1", 3, 3, 0.5, -1, 1, 1, false),
            new BGeo("no stored blocks", 2, 2, 0.0, -1, 2, 3, false));

    private interface BsrSample {
        Sample make(BGeo g, Pattern p, Random r, DType t);
    }

    private static List<Sample> bsr(Random r, DType t, BsrSample s) {
        List<Sample> out = new ArrayList<>();
        for (BGeo g : BGEOS) {
            out.add(s.make(g, SparseRef.pattern(r, g.rows(), g.cols(), g.density(), g.emptyRow()), r, t));
        }
        return out;
    }

    private static Arg dense(Random r, DType t, boolean view, long rows, long cols) {
        Arg a = u(r, t, rows, cols);
        return view && rows > 1 && cols > 1 ? a.view() : a;
    }

    private static OpInfo.Builder floats(OpInfo.Builder b) {
        return b.floats(F32).dtype(DType.BFLOAT16, BF16, BF16);
    }

    static final List<OpInfo> ENTRIES = List.of(
            floats(OpInfo.of("bsr_spmm", F, "C = A·b for a BSR matrix A (crow and col over b×b blocks, values [nnzb, b, b]) and b [cols, n]")
                    .samples((r, t) -> bsr(r, t, (g, p, rr, tt) -> new Sample(g.label(), null, crow(p), col(p),
                            u(rr, tt, p.nnz(), g.block(), g.block()), dense(rr, tt, g.view(), (long) p.cols() * g.block(), g.n()))))
                    .reference((s, in) -> {
                        int bs = (int) s.dims(2)[1];
                        Pattern p = SparseRef.pattern(in[0], in[1], (int) s.dims(3)[0] / bs);
                        double[] a = SparseRef.bsrDense(p, in[2], bs);
                        return new double[][] {SparseRef.matmul(a, in[3], p.rows() * bs, p.cols() * bs, (int) s.dims(3)[1])};
                    }))
                    .gradCheck().build(),
            floats(OpInfo.of("bsr_spmm_t", F, "C = Aᵀ·b for a BSR matrix A and b [rows, n] (the gradient of bsr_spmm to b)")
                    .samples((r, t) -> bsr(r, t, (g, p, rr, tt) -> new Sample(g.label(),
                            new Transposed((long) p.cols() * g.block()), crow(p), col(p),
                            u(rr, tt, p.nnz(), g.block(), g.block()), dense(rr, tt, g.view(), (long) p.rows() * g.block(), g.n()))))
                    .reference((s, in) -> {
                        int bs = (int) s.dims(2)[1];
                        Pattern p = SparseRef.pattern(in[0], in[1], (int) (((Transposed) s.attrs()).cols() / bs));
                        double[] a = SparseRef.transpose(SparseRef.bsrDense(p, in[2], bs), p.rows() * bs, p.cols() * bs);
                        return new double[][] {SparseRef.matmul(a, in[3], p.cols() * bs, p.rows() * bs, (int) s.dims(3)[1])};
                    }))
                    .gradCheck().build(),
            floats(OpInfo.of("bsr_sddmm", F, "the b×b blocks of x·yᵀ on a BSR pattern: [nnzb, b, b]")
                    .samples((r, t) -> bsr(r, t, (g, p, rr, tt) -> new Sample(g.label(), new Block(g.block()), crow(p), col(p),
                            dense(rr, tt, g.view(), (long) p.rows() * g.block(), g.n()),
                            dense(rr, tt, false, (long) p.cols() * g.block(), g.n()))))
                    .reference((s, in) -> {
                        int bs = ((Block) s.attrs()).size();
                        Pattern p = SparseRef.pattern(in[0], in[1], (int) s.dims(3)[0] / bs);
                        int d = (int) s.dims(2)[1];
                        double[] out = new double[p.nnz() * bs * bs];
                        for (int i = 0; i < p.rows(); i++) {
                            for (long e = p.crow()[i]; e < p.crow()[i + 1]; e++) {
                                for (int a = 0; a < bs; a++) {
                                    for (int q = 0; q < bs; q++) {
                                        double acc = 0;
                                        for (int j = 0; j < d; j++) {
                                            acc += in[2][(i * bs + a) * d + j] * in[3][((int) p.col()[(int) e] * bs + q) * d + j];
                                        }
                                        out[((int) e * bs + a) * bs + q] = acc;
                                    }
                                }
                            }
                        }
                        return new double[][] {out};
                    }))
                    .gradCheck().build(),
            floats(OpInfo.of("csr_spmm", F, "C = A·b for a CSR matrix A (crow, col, values) and a dense b [cols, n]")
                    .samples((r, t) -> csr(r, t, (g, p, rr, tt) -> new Sample(g.label(), null, crow(p), col(p),
                            u(rr, tt, p.nnz()), dense(rr, tt, g.view(), g.cols(), g.n()))))
                    .reference((s, in) -> {
                        Pattern p = SparseRef.pattern(in[0], in[1], (int) s.dims(3)[0]);
                        return new double[][] {SparseRef.spmm(p, in[2], in[3], (int) s.dims(3)[1])};
                    }))
                    .gradCheck().build(),
            floats(OpInfo.of("csr_spmm_t", F, "C = Aᵀ·b for a CSR matrix A and b [rows, n] (the gradient of csr_spmm to b)")
                    .samples((r, t) -> csr(r, t, (g, p, rr, tt) -> new Sample(g.label(), new Transposed(g.cols()), crow(p),
                            col(p), u(rr, tt, p.nnz()), dense(rr, tt, g.view(), g.rows(), g.n()))))
                    .reference((s, in) -> {
                        Pattern p = SparseRef.pattern(in[0], in[1], (int) ((Transposed) s.attrs()).cols());
                        return new double[][] {SparseRef.spmmT(p, in[2], in[3], (int) s.dims(3)[1])};
                    }))
                    .gradCheck().build(),
            floats(OpInfo.of("csr_sddmm", F, "the entries of x·yᵀ on a CSR pattern (sampled dense-dense matmul)")
                    .samples((r, t) -> csr(r, t, (g, p, rr, tt) -> new Sample(g.label(), null, crow(p), col(p),
                            dense(rr, tt, g.view(), g.rows(), g.n()), dense(rr, tt, false, g.cols(), g.n()))))
                    .reference((s, in) -> {
                        Pattern p = SparseRef.pattern(in[0], in[1], (int) s.dims(3)[0]);
                        return new double[][] {SparseRef.sddmm(p, in[2], in[3], (int) s.dims(2)[1])};
                    }))
                    .gradCheck().build(),
            floats(OpInfo.of("csr_softmax", F, "softmax over each CSR row's stored values (absent entries are -inf)")
                    .samples((r, t) -> csr(r, t, (g, p, rr, tt) -> new Sample(g.label(), null, crow(p),
                            Gen.ur(rr, tt, -3, 3, p.nnz()))))
                    .reference((s, in) -> new double[][] {SparseRef.softmax(longs(in[0]), in[1])}))
                    .gradCheck().build(),
            floats(OpInfo.of("csr_softmax_backward", F, "dx of csr_softmax: y·(dy − Σ_row y·dy)")
                    .samples((r, t) -> csr(r, t, (g, p, rr, tt) -> new Sample(g.label(), null, crow(p),
                            Gen.ur(rr, tt, 0.05, 1, p.nnz()), u(rr, tt, p.nnz()))))
                    .reference((s, in) -> new double[][] {SparseRef.softmaxBackward(longs(in[0]), in[1], in[2])}))
                    .coveredBy("csr_softmax").build(),
            floats(OpInfo.of("topk", F, "the k largest (or smallest) values along an axis, sorted, with int64 indices")
                    .samples((r, t) -> List.of(
                            new Sample("last axis, largest", new TopK(3, -1, true), u(r, t, 4, 9)),
                            new Sample("middle axis, smallest", new TopK(2, 1, false), u(r, t, 2, 5, 3)),
                            new Sample("first axis of a view, k = len", new TopK(5, 0, true), u(r, t, 5, 3).view()),
                            new Sample("k = 1 over 1", new TopK(1, 0, true), u(r, t, 1)),
                            new Sample("k = 0", new TopK(0, 1, true), u(r, t, 3, 4)),
                            new Sample("empty outer", new TopK(2, 1, true), u(r, t, 0, 4))))
                    .reference((s, in) -> {
                        TopK a = (TopK) s.attrs();
                        int[] split = split(s.dims(0), a.dim());
                        return SparseRef.topk(in[0], split[0], split[1], split[2], a.k(), a.largest());
                    }))
                    .gradCheck().build(),
            floats(OpInfo.of("topk_backward", F, "dx of topk: dvalues scattered to the selected indices")
                    .samples((r, t) -> List.of(
                            new Sample("last axis", new TopKGrad(-1, 9), u(r, t, 4, 3), Arg.index(distinct(r, 4, 3, 9, 1), 4, 3)),
                            new Sample("middle axis", new TopKGrad(1, 5), u(r, t, 2, 2, 3),
                                    Arg.index(distinct(r, 2, 2, 5, 3), 2, 2, 3))))
                    .reference((s, in) -> {
                        TopKGrad a = (TopKGrad) s.attrs();
                        long[] d = s.dims(0).clone();
                        int ax = Math.floorMod(a.dim(), d.length);
                        int k = (int) d[ax];
                        d[ax] = a.length();
                        int[] sp = split(d, ax);
                        double[] dx = new double[sp[0] * sp[1] * sp[2]];
                        for (int o = 0; o < sp[0]; o++) {
                            for (int j = 0; j < k; j++) {
                                for (int i = 0; i < sp[2]; i++) {
                                    int at = (o * k + j) * sp[2] + i;
                                    dx[(o * sp[1] + (int) in[1][at]) * sp[2] + i] += in[0][at];
                                }
                            }
                        }
                        return new double[][] {dx};
                    }))
                    .coveredBy("topk").build(),
            floats(OpInfo.of("nm_compress", F, "N:M compression by magnitude: the n largest |x| of every m along a row, with uint8 positions")
                    .samples((r, t) -> List.of(
                            new Sample("2:4, 3x8", new NM(2, 4), u(r, t, 3, 8)),
                            new Sample("1:4 of a view, 5x12", new NM(1, 4), u(r, t, 5, 12).view()),
                            new Sample("3:8, 2x16", new NM(3, 8), u(r, t, 2, 16)),
                            new Sample("empty", new NM(2, 4), u(r, t, 0, 8))))
                    .reference((s, in) -> {
                        NM a = (NM) s.attrs();
                        return SparseRef.nmCompress(in[0], (int) s.dims(0)[0], (int) s.dims(0)[1], a.n(), a.m());
                    }))
                    .gradCheck().build(),
            floats(OpInfo.of("nm_decompress", F, "the dense matrix of an N:M operand (values, uint8 positions)")
                    .samples((r, t) -> List.of(
                            new Sample("2:4, 3x8", new NM(2, 4), u(r, t, 3, 4), meta(SparseRef.nmMeta(r, 3, 8, 2, 4), 3, 4)),
                            new Sample("3:8, 2x16", new NM(3, 8), u(r, t, 2, 6), meta(SparseRef.nmMeta(r, 2, 16, 3, 8), 2, 6))))
                    .reference((s, in) -> {
                        NM a = (NM) s.attrs();
                        int rows = (int) s.dims(0)[0];
                        int k = (int) s.dims(0)[1] / a.n() * a.m();
                        return new double[][] {SparseRef.nmDense(in[0], in[1], rows, k, a.n(), a.m())};
                    }))
                    .notDifferentiable("a conversion; gradients reach N:M values through nm_matmul and nm_compress").build(),
            floats(OpInfo.of("nm_matmul", F, "C = W·b for an N:M weight W (values, uint8 positions) and a dense b [k, n]")
                    .samples((r, t) -> nmSamples(r, t, false))
                    .reference((s, in) -> {
                        NM a = (NM) s.attrs();
                        int rows = (int) s.dims(0)[0];
                        int k = (int) s.dims(2)[0];
                        int n = (int) s.dims(2)[1];
                        return new double[][] {SparseRef.matmul(SparseRef.nmDense(in[0], in[1], rows, k, a.n(), a.m()), in[2],
                                rows, k, n)};
                    }))
                    .gradCheck().build(),
            floats(OpInfo.of("nm_matmul_backward", F, "both gradients of nm_matmul: dvalues on W's pattern and db = Wᵀ·dC")
                    .samples((r, t) -> nmSamples(r, t, true))
                    .reference((s, in) -> {
                        NM a = (NM) s.attrs();
                        int rows = (int) s.dims(0)[0];
                        int k = (int) s.dims(2)[0];
                        int n = (int) s.dims(2)[1];
                        double[] dc = in[3];
                        double[] w = SparseRef.nmDense(in[0], in[1], rows, k, a.n(), a.m());
                        double[] dv = new double[in[0].length];
                        int per = k / a.m() * a.n();
                        for (int i = 0; i < rows; i++) {
                            for (int sl = 0; sl < per; sl++) {
                                int c = sl / a.n() * a.m() + (int) in[1][i * per + sl];
                                double acc = 0;
                                for (int j = 0; j < n; j++) {
                                    acc += dc[i * n + j] * in[2][c * n + j];
                                }
                                dv[i * per + sl] = acc;
                            }
                        }
                        double[] db = new double[k * n];
                        for (int i = 0; i < rows; i++) {
                            for (int c = 0; c < k; c++) {
                                for (int j = 0; j < n; j++) {
                                    db[c * n + j] += w[i * k + c] * dc[i * n + j];
                                }
                            }
                        }
                        return new double[][] {dv, db};
                    }))
                    .coveredBy("nm_matmul").build());

    private static List<Sample> nmSamples(Random r, DType t, boolean backward) {
        record G(String label, NM nm, int rows, int k, int n, boolean view) {
        }
        List<Sample> out = new ArrayList<>();
        for (G g : List.of(new G("2:4, 5x8 · 8x7", new NM(2, 4), 5, 8, 7, false),
                new G("1:4, b a view, 3x12 · 12x4", new NM(1, 4), 3, 12, 4, true),
                new G("3:8, 2x16 · 16x1", new NM(3, 8), 2, 16, 1, false),
                new G("2:4, n = 0", new NM(2, 4), 3, 4, 0, false))) {
            int per = g.k() / g.nm().m() * g.nm().n();
            Arg v = u(r, t, g.rows(), per);
            Arg m = meta(SparseRef.nmMeta(r, g.rows(), g.k(), g.nm().n(), g.nm().m()), g.rows(), per);
            Arg b = dense(r, t, g.view(), g.k(), g.n());
            out.add(backward ? new Sample(g.label(), g.nm(), v, m, b, u(r, t, g.rows(), g.n()))
                    : new Sample(g.label(), g.nm(), v, m, b));
        }
        return out;
    }

    /** Per (outer, inner) line, k distinct positions in [0, len) laid out as [outer, k, inner]. */
    private static long[] distinct(Random r, int outer, int k, int len, int inner) {
        long[] idx = new long[outer * k * inner];
        for (int o = 0; o < outer; o++) {
            for (int i = 0; i < inner; i++) {
                List<Long> p = new ArrayList<>();
                for (long q = 0; q < len; q++) {
                    p.add(q);
                }
                java.util.Collections.shuffle(p, r);
                for (int j = 0; j < k; j++) {
                    idx[(o * k + j) * inner + i] = p.get(j);
                }
            }
        }
        return idx;
    }

    private static int[] split(long[] dims, int dim) {
        int d = Math.floorMod(dim, dims.length);
        int outer = 1;
        int inner = 1;
        for (int i = 0; i < d; i++) {
            outer *= (int) dims[i];
        }
        for (int i = d + 1; i < dims.length; i++) {
            inner *= (int) dims[i];
        }
        return new int[] {outer, (int) dims[d], inner};
    }

    private static long[] longs(double[] d) {
        long[] l = new long[d.length];
        for (int i = 0; i < l.length; i++) {
            l[i] = (long) d[i];
        }
        return l;
    }
}
