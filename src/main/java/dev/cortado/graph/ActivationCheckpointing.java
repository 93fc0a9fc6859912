package dev.cortado.graph;

import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;

/**
 * Activation checkpointing under a memory budget: values that are cheap to compute again (the
 * outputs of elementwise ops and fused elementwise programs: activations such as ReLU's and GELU's
 * results) are not kept across a long gap between two of their reads (in a training graph: from
 * the forward to the backward) but computed again just before the later read, from inputs that are
 * live there anyway or kept a little longer. It runs on a scheduled graph (after
 * {@link MemoryAwareSchedule}), since it decides by node positions.
 *
 * <p>Greedy: while the {@link MemoryPlan}'s planned peak is above the budget, find the cheap values
 * with a gap between two of their reads that spans a position where the most bytes are live;
 * largest first, recompute one at the read after its gap (one node, its inputs mapped, so its
 * inputs may live a little longer; views of it made before are made again; later reads read the
 * copy) and re-plan. Keep the first that lowers the planned peak, or keeps it and lowers the live
 * peak; stop at the budget or when none helps. The result computes the same values (the
 * recomputed node is the same op on the same inputs).
 */
public final class ActivationCheckpointing implements Pass {
    private static final int MAX_STEPS = 256;
    private final long budgetBytes;

    public ActivationCheckpointing(long budgetBytes) {
        if (budgetBytes <= 0) {
            throw new IllegalArgumentException("the memory budget must be positive, got " + budgetBytes);
        }
        this.budgetBytes = budgetBytes;
    }

    @Override
    public String name() {
        return "checkpoint-activations";
    }

    @Override
    public Graph apply(Graph g) {
        Rewriter copy = new Rewriter(g);
        for (Node node : g.nodes()) {
            copy.copy(node);
        }
        Graph current = copy.finish();
        for (int step = 0; step < MAX_STEPS; step++) {
            MemoryPlan plan = MemoryPlan.plan(current);
            if (plan.plannedPeakBytes() <= budgetBytes) {
                break;
            }
            Graph next = improve(current, plan);
            if (next == null) {
                break;
            }
            current.close();
            current = next;
        }
        return current;
    }

    private static boolean cheap(Node n) {
        return n instanceof Node.OpCall c && c.outputs().size() == 1
                && (c.op() == FusedElementwise.OP || FusedElementwise.UNARY_CODES.containsKey(c.op().name())
                || FusedElementwise.BINARY_CODES.containsKey(c.op().name()));
    }

    /**
     * One recomputation that lowers the planned peak, or keeps it and lowers the live peak; null
     * when none does. Candidates: cheap values with a gap between two reads that spans the live
     * peak, the largest first, recomputed at the read after the gap.
     */
    private static Graph improve(Graph g, MemoryPlan plan) {
        List<Node> nodes = g.nodes();
        int n = nodes.size();
        // reads of each root value (through views too), by position
        Map<Value, List<Integer>> reads = new IdentityHashMap<>();
        for (int i = 0; i < n; i++) {
            for (Value in : nodes.get(i).inputs()) {
                if (in != null) {
                    List<Integer> r = reads.computeIfAbsent(MemoryPlan.root(g, in), k -> new ArrayList<>());
                    if (r.isEmpty() || r.get(r.size() - 1) != i) {
                        r.add(i);
                    }
                }
            }
        }
        // parameters updated in place, by the position of their update: a recomputation after it would read the new value
        Map<Value, Integer> updatedAt = new IdentityHashMap<>();
        for (int i = 0; i < n; i++) {
            if (nodes.get(i) instanceof Node.Update u) {
                for (Value w : u.writes()) {
                    updatedAt.put(w, i);
                }
            }
        }
        long[] live = liveBytes(g, plan, n);
        long livePeak = 0;
        for (long l : live) {
            livePeak = Math.max(livePeak, l);
        }
        record Candidate(Value value, int at, long bytes) {
        }
        List<Candidate> candidates = new ArrayList<>();
        for (MemoryPlan.Buffer b : plan.buffers()) {
            Value v = b.value();
            Node producer = g.producer(v);
            if (!cheap(producer)) {
                continue;
            }
            List<Integer> r = reads.getOrDefault(v, List.of());
            int prev = b.first();
            for (int p : r) {
                boolean spansPeak = false;
                for (int i = prev + 1; i < p; i++) {
                    spansPeak |= live[i] == livePeak;
                }
                if (spansPeak) {
                    if (!readsUpdatedBefore(g, producer, updatedAt, p)) {
                        candidates.add(new Candidate(v, p, b.bytes()));
                    }
                    break;
                }
                prev = p;
            }
        }
        candidates.sort((a, b) -> Long.compare(b.bytes(), a.bytes()));
        for (Candidate c : candidates) {
            Graph next = recompute(g, c.value(), c.at());
            MemoryPlan after = MemoryPlan.plan(next);
            long peakAfter = 0;
            for (long l : liveBytes(next, after, next.nodes().size())) {
                peakAfter = Math.max(peakAfter, l);
            }
            if (after.plannedPeakBytes() < plan.plannedPeakBytes()
                    || (after.plannedPeakBytes() == plan.plannedPeakBytes() && peakAfter < livePeak)) {
                return next;
            }
            next.close();
        }
        return null;
    }

    /** Whether {@code producer} reads a parameter (through views or not) that an update before position {@code at} writes. */
    private static boolean readsUpdatedBefore(Graph g, Node producer, Map<Value, Integer> updatedAt, int at) {
        for (Value in : producer.inputs()) {
            Integer u = in == null ? null : updatedAt.get(MemoryPlan.root(g, in));
            if (u != null && u < at) {
                return true;
            }
        }
        return false;
    }

    /** {@code g} with {@code v}'s producer run again before node {@code at}; reads from there on read the copy. */
    private static Graph recompute(Graph g, Value v, int at) {
        Rewriter r = new Rewriter(g);
        List<Node> nodes = g.nodes();
        Node.OpCall producer = (Node.OpCall) g.producer(v);
        for (int i = 0; i < nodes.size(); i++) {
            if (i == at) {
                List<Value> outs = r.builder().op(producer.op(), producer.attrs(), r.map(producer.inputs()),
                        List.of(v.type()));
                r.replace(v, outs.get(0));
                // views of v made earlier (a transpose the scheduler ran in the forward) are made again from the copy
                for (int j = 0; j < at; j++) {
                    if (nodes.get(j) instanceof Node.View view && MemoryPlan.root(g, view.source()) == v) {
                        r.replace(view.output(), r.builder().view(view.kind(), r.map(view.source()), view.output().type(),
                                view.strides(), view.offset()));
                    }
                }
            }
            r.copy(nodes.get(i));
        }
        return r.finish();
    }

    /** Bytes of the root values live at each position (defined at or before it, read at or after it). */
    static long[] liveBytes(Graph g, MemoryPlan plan, int n) {
        long[] live = new long[n];
        for (MemoryPlan.Buffer b : plan.buffers()) {
            for (int i = b.first(); i <= b.last() && i < n; i++) {
                live[i] += b.bytes();
            }
        }
        return live;
    }
}
