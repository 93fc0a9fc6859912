package dev.cortado.graph;

import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;

/**
 * A graph generic in one symbol (a batch size): every dimension, view stride and view offset is a
 * linear form {@code scale * S + offset}. It is found from three captures of the same function with
 * the symbol at {@code v}, {@code v+1} and {@code v+2}: when the three graphs have the same structure
 * (the same nodes in the same order, the same attributes, the same parameters, equal constants) and
 * every size, stride and offset changes by the same step from one to the next, that step is the
 * scale. {@link #instantiate} gives the concrete graph for any value; it is verified, which runs every
 * op's shape rule on the new sizes, so a function whose graph is not linear in the symbol after all
 * is caught there (and re-captured by {@link CompiledFunction}).
 */
final class SymbolicShapes implements AutoCloseable {

    /** The generic graph, or why there is none. */
    record Result(SymbolicShapes shapes, String whyNot) {
    }

    private final Graph base;
    private final String symbol;
    private final long value;
    private final Map<Value, long[]> strideScales;
    private final Map<Value, Long> offsetScales;

    private SymbolicShapes(Graph base, String symbol, long value, Map<Value, long[]> strideScales,
            Map<Value, Long> offsetScales) {
        this.base = base;
        this.symbol = symbol;
        this.value = value;
        this.strideScales = strideScales;
        this.offsetScales = offsetScales;
    }

    /** The graph at the value it was captured with, its dimensions in linear forms of the symbol. */
    Graph base() {
        return base;
    }

    String symbol() {
        return symbol;
    }

    private static final class Mismatch extends RuntimeException {
        Mismatch(String message) {
            super(message, null, false, false);
        }
    }

    /** Generalizes {@code g[k]}, captured with {@code symbol} at {@code value + k}, k = 0, 1, 2. */
    static Result generalize(Graph[] g, String symbol, long value) {
        Graph.Builder b = Graph.builder();
        try {
            Map<Value, long[]> strideScales = new IdentityHashMap<>();
            Map<Value, Long> offsetScales = new IdentityHashMap<>();
            List<Map<Value, Value>> maps = new ArrayList<>();
            for (int k = 0; k < g.length; k++) {
                maps.add(new IdentityHashMap<>());
            }
            sameCount("inputs", g, x -> x.inputs().size());
            sameCount("parameters", g, x -> x.parameters().size());
            sameCount("constants", g, x -> x.constants().size());
            sameCount("nodes", g, x -> x.nodes().size());
            sameCount("outputs", g, x -> x.outputs().size());
            for (int i = 0; i < g[0].inputs().size(); i++) {
                final int at = i;
                define(maps, g, x -> x.inputs().get(at), b.input(fit(g, x -> x.inputs().get(at).type(), symbol, value)));
            }
            for (int i = 0; i < g[0].parameters().size(); i++) {
                Value p = g[0].parameters().get(i);
                for (Graph x : g) {
                    Value q = x.parameters().get(i);
                    if (q.tensor() != p.tensor()) {
                        throw new Mismatch("parameter " + i + " is " + p.ref() + " in one capture and " + q.ref() + " in another");
                    }
                }
                final int at = i;
                define(maps, g, x -> x.parameters().get(at), b.parameter(p.tensor(), p.name()));
            }
            for (int i = 0; i < g[0].constants().size(); i++) {
                Tensor c = g[0].constants().get(i).tensor();
                for (Graph x : g) {
                    Tensor d = x.constants().get(i).tensor();
                    if (!c.shape().equals(d.shape()) || c.dtype() != d.dtype() || c.numel() > (1 << 16)
                            || !Arrays.equals(c.toDoubleArray(), d.toDoubleArray())) {
                        throw new Mismatch("constant " + i + " (" + c.describe() + ") differs between sizes");
                    }
                }
                final int at = i;
                define(maps, g, x -> x.constants().get(at), b.constant(c));
            }
            for (int n = 0; n < g[0].nodes().size(); n++) {
                final int at = n;
                Node first = g[0].nodes().get(n);
                for (Graph x : g) {
                    Node other = x.nodes().get(n);
                    if (other.getClass() != first.getClass() || !other.label().equals(first.label())
                            || (other instanceof Node.OpCall && !other.attributes().equals(first.attributes()))) {
                        throw new Mismatch("node " + n + " is " + first.label() + "(" + first.attributes() + ") at "
                                + symbol + " = " + value + " and " + other.label() + "(" + other.attributes() + ") at another size");
                    }
                }
                List<Value> in = new ArrayList<>();
                for (int j = 0; j < first.inputs().size(); j++) {
                    Value v0 = first.inputs().get(j);
                    Value mapped = v0 == null ? null : maps.get(0).get(v0);
                    for (int k = 1; k < g.length; k++) {
                        Value vk = g[k].nodes().get(n).inputs().get(j);
                        Value mk = vk == null ? null : maps.get(k).get(vk);
                        if (mk != mapped) {
                            throw new Mismatch("node " + n + " (" + first.label() + ") reads other values at other sizes");
                        }
                    }
                    in.add(mapped);
                }
                if (first instanceof Node.OpCall c) {
                    List<TensorType> types = new ArrayList<>();
                    for (int o = 0; o < c.outputs().size(); o++) {
                        final int out = o;
                        types.add(fit(g, x -> x.nodes().get(at).outputs().get(out).type(), symbol, value));
                    }
                    List<Value> outs = b.op(c.op(), c.attrs(), in, types);
                    for (int o = 0; o < outs.size(); o++) {
                        final int out = o;
                        define(maps, g, x -> x.nodes().get(at).outputs().get(out), outs.get(o));
                    }
                } else if (first instanceof Node.View v) {
                    long[] scales = new long[v.strides().length];
                    long[][] strides = new long[g.length][];
                    long[] offsets = new long[g.length];
                    for (int k = 0; k < g.length; k++) {
                        Node.View vk = (Node.View) g[k].nodes().get(n);
                        strides[k] = vk.strides();
                        offsets[k] = vk.offset();
                    }
                    for (int d = 0; d < scales.length; d++) {
                        scales[d] = step(strides[0][d], strides[1][d], strides[2][d], "a stride of node " + n);
                    }
                    long offsetScale = step(offsets[0], offsets[1], offsets[2], "the offset of node " + n);
                    Value out = b.view(v.kind(), in.get(0), fit(g, x -> x.nodes().get(at).outputs().get(0).type(), symbol, value),
                            v.strides(), v.offset());
                    strideScales.put(out, scales);
                    offsetScales.put(out, offsetScale);
                    define(maps, g, x -> x.nodes().get(at).outputs().get(0), out);
                } else if (first instanceof Node.Copy c) {
                    Value out = b.copy(c.kind(), in.get(0), fit(g, x -> x.nodes().get(at).outputs().get(0).type(), symbol, value));
                    define(maps, g, x -> x.nodes().get(at).outputs().get(0), out);
                }
            }
            for (int i = 0; i < g[0].outputs().size(); i++) {
                Value mapped = maps.get(0).get(g[0].outputs().get(i));
                for (int k = 1; k < g.length; k++) {
                    if (maps.get(k).get(g[k].outputs().get(i)) != mapped) {
                        throw new Mismatch("output " + i + " is another value at another size");
                    }
                }
                b.output(mapped);
            }
            return new Result(new SymbolicShapes(b.build(), symbol, value, strideScales, offsetScales), null);
        } catch (Mismatch e) {
            b.close();
            return new Result(null, e.getMessage());
        } catch (RuntimeException | Error e) {
            b.close();
            throw e;
        }
    }

    private interface Pick<T> {
        T of(Graph g);
    }

    private static void sameCount(String what, Graph[] g, Pick<Integer> count) {
        for (Graph x : g) {
            if (!count.of(x).equals(count.of(g[0]))) {
                throw new Mismatch("the captures have " + count.of(g[0]) + " and " + count.of(x) + " " + what);
            }
        }
    }

    private static void define(List<Map<Value, Value>> maps, Graph[] g, Pick<Value> pick, Value generic) {
        for (int k = 0; k < g.length; k++) {
            maps.get(k).put(pick.of(g[k]), generic);
        }
    }

    /** The common step of three values one symbol step apart. */
    private static long step(long q0, long q1, long q2, String what) {
        if (q1 - q0 != q2 - q1) {
            throw new Mismatch(what + " is not linear in the symbol (" + q0 + ", " + q1 + ", " + q2 + ")");
        }
        return q1 - q0;
    }

    private static TensorType fit(Graph[] g, Pick<TensorType> pick, String symbol, long value) {
        TensorType t0 = pick.of(g[0]);
        TensorType t1 = pick.of(g[1]);
        TensorType t2 = pick.of(g[2]);
        if (t0.dtype() != t1.dtype() || t0.dtype() != t2.dtype() || !t0.device().equals(t1.device())
                || t0.rank() != t1.rank() || t0.rank() != t2.rank()) {
            throw new Mismatch("a value is " + t0 + " at one size and " + t1 + " or " + t2 + " at the others");
        }
        List<Dim> dims = new ArrayList<>();
        for (int d = 0; d < t0.rank(); d++) {
            long q0 = t0.dims().get(d).size();
            long scale = step(q0, t1.dims().get(d).size(), t2.dims().get(d).size(), "dimension " + d + " of " + t0);
            dims.add(Dim.linear(symbol, scale, q0 - scale * value, value));
        }
        return new TensorType(t0.dtype(), t0.device(), dims);
    }

    /**
     * The concrete graph where the symbol is {@code v} (the caller closes it); verified, so the
     * shape rules confirm the new sizes.
     *
     * @throws GraphException when the graph does not hold at {@code v}
     */
    Graph instantiate(long v) {
        long delta = v - value;
        Map<Value, Value> map = new IdentityHashMap<>();
        Graph.Builder b = Graph.builder();
        try {
            for (Value x : base.inputs()) {
                map.put(x, b.input(x.type().at(v)));
            }
            for (Value x : base.parameters()) {
                map.put(x, b.parameter(x.tensor(), x.name()));
            }
            for (Value x : base.constants()) {
                map.put(x, b.constant(x.tensor()));
            }
            for (Node n : base.nodes()) {
                List<Value> in = new ArrayList<>();
                for (Value x : n.inputs()) {
                    in.add(x == null ? null : map.get(x));
                }
                if (n instanceof Node.OpCall c) {
                    List<TensorType> types = new ArrayList<>();
                    for (Value o : c.outputs()) {
                        types.add(o.type().at(v));
                    }
                    List<Value> outs = b.op(c.op(), c.attrs(), in, types);
                    for (int i = 0; i < outs.size(); i++) {
                        map.put(c.outputs().get(i), outs.get(i));
                    }
                } else if (n instanceof Node.View view) {
                    long[] strides = view.strides();
                    long[] scales = strideScales.get(view.output());
                    for (int d = 0; d < strides.length; d++) {
                        strides[d] += scales[d] * delta;
                    }
                    long offset = view.offset() + offsetScales.get(view.output()) * delta;
                    map.put(view.output(), b.view(view.kind(), in.get(0), view.output().type().at(v), strides, offset));
                } else if (n instanceof Node.Copy c) {
                    map.put(c.output(), b.copy(c.kind(), in.get(0), c.output().type().at(v)));
                }
            }
            for (Value x : base.outputs()) {
                b.output(map.get(x));
            }
        } catch (RuntimeException | Error e) {
            b.close();
            throw e;
        }
        Graph g = b.build();
        try {
            return g.verify();
        } catch (RuntimeException | Error e) {
            g.close();
            throw e;
        }
    }

    @Override
    public void close() {
        base.close();
    }
}
