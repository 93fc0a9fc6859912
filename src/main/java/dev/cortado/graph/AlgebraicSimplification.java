package dev.cortado.graph;

import dev.cortado.ops.Elementwise;
import dev.cortado.ops.Op;
import java.util.Arrays;

/**
 * Rewrites that keep every result bit for bit:
 * <ul>
 * <li>a view of a view becomes one view of the first source (strides are in units of the memory
 * read, so the offsets add and the outer strides stand);</li>
 * <li>a view that reads its source exactly as it is (same sizes, strides, offset 0) is its source;</li>
 * <li>a same-dtype, same-device copy of a contiguous value is the value (values are never written
 * after they are defined);</li>
 * <li>{@code x + 0}, {@code x - 0}, {@code x * 1}, {@code x / 1} with a constant of zeros or ones
 * that leaves x's dtype and shape unchanged, and {@code affine(x, 1, 0)}, are x.</li>
 * </ul>
 */
public final class AlgebraicSimplification implements Pass {
    /** Constants larger than this are not read to see whether they are all zeros or ones. */
    private static final long MAX_INSPECTED = 4096;

    @Override
    public String name() {
        return "simplify";
    }

    @Override
    public Graph apply(Graph g) {
        Rewriter r = new Rewriter(g);
        for (Node n : g.nodes()) {
            if (n instanceof Node.View v) {
                Node inner = g.producer(v.source());
                Value source = v.source();
                long offset = v.offset();
                String kind = v.kind();
                while (inner instanceof Node.View iv) {
                    source = iv.source();
                    offset += iv.offset();
                    kind = iv.kind() + "+" + kind;
                    inner = g.producer(source);
                }
                Value mapped = r.map(source);
                if (offset == 0 && v.output().type().shape().equals(mapped.type().shape())
                        && Arrays.equals(v.strides(), stridesOf(g, source))) {
                    r.replace(v.output(), mapped);
                } else {
                    r.replace(v.output(), r.builder().view(kind, mapped, v.output().type(), v.strides(), offset));
                }
                continue;
            }
            if (n instanceof Node.Copy c) {
                Value s = c.source();
                if (s.type().dtype() == c.output().type().dtype() && s.type().device().equals(c.output().type().device())
                        && Arrays.equals(stridesOf(g, s), s.type().shape().contiguousStrides())) {
                    r.replace(c.output(), r.map(s));
                    continue;
                }
            }
            if (n instanceof Node.OpCall call) {
                Value same = identityOperand(call, r);
                if (same != null) {
                    r.replace(call.outputs().get(0), same);
                    continue;
                }
            }
            r.copy(n);
        }
        return r.finish();
    }

    private static long[] stridesOf(Graph g, Value v) {
        return g.strides(v);
    }

    /** The operand the call returns unchanged, or null. */
    private static Value identityOperand(Node.OpCall call, Rewriter r) {
        Op<?> op = call.op();
        Value out = call.outputs().get(0);
        if (op == Elementwise.AFFINE_OP && call.attrs() instanceof Elementwise.Params p && p.p0() == 1 && p.p1() == 0) {
            return sameType(r.map(call.inputs().get(0)), out);
        }
        double neutral;
        boolean commutes;
        if (op == Elementwise.ADD_OP) {
            neutral = 0;
            commutes = true;
        } else if (op == Elementwise.MUL_OP) {
            neutral = 1;
            commutes = true;
        } else if (op == Elementwise.SUB_OP) {
            neutral = 0;
            commutes = false;
        } else if (op == Elementwise.DIV_OP) {
            neutral = 1;
            commutes = false;
        } else {
            return null;
        }
        Value a = r.map(call.inputs().get(0));
        Value b = r.map(call.inputs().get(1));
        if (allEqual(b, neutral)) {
            return sameType(a, out);
        }
        if (commutes && allEqual(a, neutral)) {
            return sameType(b, out);
        }
        return null;
    }

    private static Value sameType(Value v, Value out) {
        return v.type().sameConcrete(out.type()) ? v : null;
    }

    private static boolean allEqual(Value v, double x) {
        if (!v.isConstant() || v.type().numel() > MAX_INSPECTED || v.type().numel() == 0) {
            return false;
        }
        for (double d : v.tensor().toDoubleArray()) {
            if (d != x) {
                return false;
            }
        }
        return true;
    }
}
