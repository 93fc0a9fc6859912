package dev.cortado.ops.opinfo;

import static dev.cortado.ops.opinfo.Gen.u;
import static dev.cortado.ops.opinfo.Gen.ur;

import dev.cortado.backend.kernels.NativeCodes.Binary;
import dev.cortado.backend.kernels.NativeCodes.Unary;
import dev.cortado.graph.FusedElementwise;
import dev.cortado.graph.FusedElementwise.Program;
import java.util.List;

/**
 * Graph-layer ops: {@code fused_elementwise}, a program of elementwise instructions
 * ({@link FusedElementwise}) run by the fused interpreter. Reference: the program evaluated here
 * in float64 with the ops' textbook formulas, inputs broadcast to the iteration shape by index.
 * Samples: broadcasting (a row and a column), a transposed input, several outputs, a scalar
 * constant, an odd 3-d shape with a size-1 dim, an empty dim. float32, float64, bfloat16 and
 * float16 (computed in float32, rounded once on store).
 */
final class GraphSamples {
    private GraphSamples() {
    }

    /** {@code out0 = tanh(x * row + col)}, {@code out1 = affine(x * row, 0.5, -1)}. */
    static final Program BROADCAST = FusedElementwise.program().load(0, 0).load(1, 1).load(2, 2)
            .binary(Binary.MUL, 3, 0, 1).binary(Binary.ADD, 4, 3, 2).unary(Unary.TANH, 4, 4, 0, 0).store(0, 4)
            .unary(Unary.AFFINE, 3, 3, 0.5, -1).store(1, 3).build();
    /** {@code out0 = silu(x) - 0.25 * x}, {@code out1 = relu_grad(g, x)}. */
    static final Program CONSTANT = FusedElementwise.program().load(0, 0).load(1, 1).constant(2, 0.25)
            .unary(Unary.SILU, 3, 0, 0, 0).binary(Binary.MUL, 2, 2, 0).binary(Binary.SUB, 3, 3, 2).store(0, 3)
            .binary(Binary.RELU_GRAD, 4, 1, 0).store(1, 4).build();

    static final List<OpInfo> ENTRIES = List.of(
            OpInfo.of("fused_elementwise", "graph", "a chain of elementwise ops as one pass over memory: a register "
                            + "program (load, constant, unary.def and binary.def ops, store) interpreted tile by tile")
                    .samples((r, t) -> List.of(
                            new Sample("x [5, 7] (transposed view) * row [7] + column [5, 1], two outputs", BROADCAST,
                                    u(r, t, 5, 7).view(), u(r, t, 7), u(r, t, 5, 1)),
                            new Sample("odd 3-d [3, 1, 9] with a scalar constant and relu_grad", CONSTANT,
                                    ur(r, t, -3, 3, 3, 1, 9), u(r, t, 3, 1, 9)),
                            new Sample("empty [0, 4]", BROADCAST, u(r, t, 0, 4), u(r, t, 4), u(r, t, 0, 1))))
                    .reference((s, in) -> evaluate((Program) s.attrs(), s, in))
                    .floats(1e-5).halves(1e-2, 2e-3).notDifferentiable("a graph op made after the backward was captured")
                    .build());

    /** The program in float64 over the broadcast shape of the inputs. */
    private static double[][] evaluate(Program p, Sample s, double[][] in) {
        int n = in.length;
        long[][] dims = new long[n][];
        int rank = 0;
        for (int i = 0; i < n; i++) {
            dims[i] = s.dims(i);
            rank = Math.max(rank, dims[i].length);
        }
        long[] shape = new long[rank];
        java.util.Arrays.fill(shape, 1);
        for (long[] d : dims) {
            for (int k = 0; k < d.length; k++) {
                long v = d[k];
                int at = rank - d.length + k;
                shape[at] = v == 1 ? shape[at] : v;
                if (v == 0) {
                    shape[at] = 0;
                }
            }
        }
        long numel = 1;
        for (long v : shape) {
            numel *= v;
        }
        double[][] out = new double[p.outputs()][(int) numel];
        double[] reg = new double[FusedElementwise.MAX_REGISTERS];
        long[] idx = new long[rank];
        for (int e = 0; e < numel; e++) {
            long rest = e;
            for (int k = rank - 1; k >= 0; k--) {
                idx[k] = rest % shape[k];
                rest /= shape[k];
            }
            for (int i = 0; i < p.size(); i++) {
                int dst = p.field(i, 2);
                int a = p.field(i, 3);
                switch (p.kind(i)) {
                    case LOAD -> reg[dst] = in[a][(int) broadcastIndex(idx, dims[a])];
                    case CONST -> reg[dst] = p.param(i, 0);
                    case UNARY -> reg[dst] = unary(p.field(i, 1), reg[a], p.param(i, 0), p.param(i, 1));
                    case BINARY -> reg[dst] = binary(p.field(i, 1), reg[a], reg[p.field(i, 4)]);
                    case STORE -> out[dst][e] = reg[a];
                }
            }
        }
        return out;
    }

    private static long broadcastIndex(long[] idx, long[] dims) {
        long at = 0;
        int off = idx.length - dims.length;
        for (int k = 0; k < dims.length; k++) {
            at = at * dims[k] + (dims[k] == 1 ? 0 : idx[off + k]);
        }
        return at;
    }

    private static double unary(int code, double x, double p0, double p1) {
        if (code == Unary.TANH) {
            return Math.tanh(x);
        } else if (code == Unary.AFFINE) {
            return x * p0 + p1;
        } else if (code == Unary.SILU) {
            return x / (1 + Math.exp(-x));
        }
        throw new IllegalArgumentException("no float64 reference for unary op " + Unary.name(code));
    }

    private static double binary(int code, double a, double b) {
        if (code == Binary.ADD) {
            return a + b;
        } else if (code == Binary.SUB) {
            return a - b;
        } else if (code == Binary.MUL) {
            return a * b;
        } else if (code == Binary.RELU_GRAD) {
            return b > 0 ? a : 0;
        }
        throw new IllegalArgumentException("no float64 reference for binary op " + Binary.name(code));
    }
}
