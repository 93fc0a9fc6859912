package dev.cortado.graph;

import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;

/**
 * Activation checkpointing: values kept across a long gap between two of their reads (in a training
 * graph: from the forward to the backward) are not kept but computed again just before the later
 * read. It runs on a scheduled graph (after {@link MemoryAwareSchedule}), since it decides by node
 * positions.
 *
 * <p>What may be computed again: the outputs of cheap ops (elementwise ops, fused elementwise
 * programs, RMS normalization: one read and one write of their operand) and, under a budget, of
 * matrix products and rotary embeddings. An input of a recomputed node that is no longer live at the
 * recomputation is itself computed again when its producer may be (a segment: {@code gate = xn @ Wg}
 * with {@code xn = rms_norm(x)} from the block's input {@code x}, which the backward keeps anyway, up
 * to {@link #MAX_SEGMENT} nodes); otherwise it is kept longer. Nothing that draws random numbers,
 * updates state or reads a parameter after its update is recomputed.
 *
 * <p>Greedy: while the {@link MemoryPlan}'s planned peak is above the budget, find the values with a
 * gap between two of their reads that spans a position where the most bytes are live; largest
 * first, recompute one (its segment) at the read after its gap (views of it made before are made
 * again; later reads read the copies) and re-plan. Keep the first that lowers the planned peak, or
 * keeps it and lowers the live peak; stop at the budget or when none helps. The result computes the
 * same values (each recomputed node is the same op on the same inputs).
 *
 * <p>{@link #free()}: only cheap single nodes whose inputs are live at the recomputation anyway, so no
 * value lives longer; no budget.
 */
public final class ActivationCheckpointing implements Pass {
    private static final int MAX_STEPS = 256;
    /** The most nodes one recomputation runs again (the value's producer and the producers of its inputs). */
    static final int MAX_SEGMENT = 4;
    private final long budgetBytes;
    private final boolean freeOnly;

    /** Recomputes until the planned peak is at most {@code budgetBytes} (a target, not a guarantee). */
    public ActivationCheckpointing(long budgetBytes) {
        this(budgetBytes, false);
        if (budgetBytes <= 0) {
            throw new IllegalArgumentException("the memory budget must be positive, got " + budgetBytes);
        }
    }

    private ActivationCheckpointing(long budgetBytes, boolean freeOnly) {
        this.budgetBytes = budgetBytes;
        this.freeOnly = freeOnly;
    }

    /**
     * Only the recomputations that make no value live longer: the recomputed node's inputs are read
     * at or after the recomputation anyway (or are parameters, constants or graph inputs), so the
     * planned peak can only go down, for one more pass over memory per recomputed node. In a training
     * graph: SwiGLU's {@code silu(gate)} and {@code silu(gate) * up}, kept from the forward for the
     * backward, are computed again from {@code gate} and {@code up}, which the backward reads anyway.
     * No budget: it goes on while a recomputation lowers the peak. On by default
     * ({@link CompileOptions#recomputeActivations()}).
     */
    public static ActivationCheckpointing free() {
        return new ActivationCheckpointing(0, true);
    }

    @Override
    public String name() {
        return freeOnly ? "recompute-free-activations" : "checkpoint-activations";
    }

    @Override
    public Graph apply(Graph g) {
        Rewriter copy = new Rewriter(g);
        for (Node node : g.nodes()) {
            copy.copy(node);
        }
        Graph current = copy.finish();
        // the free recomputations first (they lower the peak at no cost in memory), then, under a
        // budget, the others until the budget is met
        for (boolean free : freeOnly ? new boolean[] {true} : new boolean[] {true, false}) {
            for (int step = 0; step < MAX_STEPS; step++) {
                MemoryPlan plan = MemoryPlan.plan(current);
                if (!free && plan.plannedPeakBytes() <= budgetBytes) {
                    break;
                }
                Graph next = improve(current, plan, free);
                if (next == null) {
                    break;
                }
                current.close();
                current = next;
            }
        }
        return current;
    }

    /**
     * Ops besides elementwise ones that cost one read and one write of their operand: recomputing
     * them costs what the elementwise ones do. (RMS normalization: its output feeds the projections,
     * whose weight gradients read it again; its input is read by its backward anyway.)
     */
    private static final java.util.Set<String> CHEAP_OPS = java.util.Set.of("rms_norm");

    /**
     * Ops recomputed only under a budget: they cost real work (a matrix product: 2mnk FLOPs), and
     * a recomputed product usually needs its operand computed again too. Deterministic, no state.
     */
    private static final java.util.Set<String> COSTLY_OPS = java.util.Set.of("matmul", "rope");

    private static boolean recomputable(Node n, boolean freeOnly) {
        return cheap(n) || (!freeOnly && n instanceof Node.OpCall c && COSTLY_OPS.contains(c.op().name()));
    }

    private static boolean cheap(Node n) {
        return n instanceof Node.OpCall c && (c.op() == FusedElementwise.OP || CHEAP_OPS.contains(c.op().name())
                || FusedElementwise.UNARY_CODES.containsKey(c.op().name())
                || FusedElementwise.BINARY_CODES.containsKey(c.op().name()));
    }

    /**
     * One recomputation that lowers the planned peak, or keeps it and lowers the live peak; null
     * when none does. Candidates: recomputable values with a gap between two reads that spans the
     * live peak, the largest first, recomputed (with their segment) at the read after the gap.
     */
    private static Graph improve(Graph g, MemoryPlan plan, boolean freeOnly) {
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
        record Candidate(Value value, int at, long bytes, List<Node.OpCall> segment) {
        }
        List<Candidate> candidates = new ArrayList<>();
        for (MemoryPlan.Buffer b : plan.buffers()) {
            Value v = b.value();
            Node producer = g.producer(v);
            if (!recomputable(producer, freeOnly)) {
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
                    List<Node.OpCall> segment = new ArrayList<>();
                    if (segment(g, plan, (Node.OpCall) producer, p, updatedAt, freeOnly, segment)) {
                        candidates.add(new Candidate(v, p, b.bytes(), segment));
                    }
                    break;
                }
                prev = p;
            }
        }
        candidates.sort((a, b) -> Long.compare(b.bytes(), a.bytes()));
        for (Candidate c : candidates) {
            Graph next = recompute(g, c.segment(), c.at());
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

    /**
     * Adds to {@code segment}, inputs first, the nodes to run again at position {@code at} to have
     * {@code node}'s outputs there: {@code node}, and the producers of its inputs that are dead by
     * then (when they may be recomputed; otherwise those inputs are kept longer, never in
     * {@code freeOnly}). False when the node cannot be recomputed there: it reads a parameter an
     * update before {@code at} writes, or the segment would be longer than {@link #MAX_SEGMENT}.
     */
    private static boolean segment(Graph g, MemoryPlan plan, Node.OpCall node, int at, Map<Value, Integer> updatedAt,
            boolean freeOnly, List<Node.OpCall> segment) {
        if (segment.contains(node)) {
            return true;
        }
        for (Value in : node.inputs()) {
            if (in == null) {
                continue;
            }
            Value root = MemoryPlan.root(g, in);
            Integer u = updatedAt.get(root);
            if (u != null && u < at) {
                return false;
            }
            MemoryPlan.Buffer b = plan.buffer(root);
            if (b == null || b.last() >= at) {
                continue; // a parameter, constant or graph input, or live at the recomputation anyway
            }
            if (freeOnly) {
                return false;
            }
            Node producer = g.producer(root); // a view of it made before is made again from the copy
            if (recomputable(producer, false)
                    && !segment(g, plan, (Node.OpCall) producer, at, updatedAt, false, segment)) {
                return false;
            }
        }
        segment.add(node);
        return segment.size() <= (freeOnly ? 1 : MAX_SEGMENT);
    }

    /**
     * {@code g} with the nodes of {@code segment} (inputs first) run again before node {@code at}
     * (all outputs of each: a fused program may have several); reads from there on read the copies.
     */
    private static Graph recompute(Graph g, List<Node.OpCall> segment, int at) {
        Rewriter r = new Rewriter(g);
        List<Node> nodes = g.nodes();
        for (int i = 0; i < nodes.size(); i++) {
            if (i == at) {
                for (Node.OpCall producer : segment) {
                    List<TensorType> types = new ArrayList<>();
                    for (Value out : producer.outputs()) {
                        types.add(out.type());
                    }
                    List<Value> outs = r.builder().op(producer.op(), producer.attrs(), r.map(producer.inputs()), types);
                    for (int k = 0; k < outs.size(); k++) {
                        r.replace(producer.outputs().get(k), outs.get(k));
                    }
                    // views of the outputs made earlier (a transpose the scheduler ran in the forward) are made again from the copies
                    for (int j = 0; j < at; j++) {
                        if (nodes.get(j) instanceof Node.View view
                                && producer.outputs().contains(MemoryPlan.root(g, view.source()))) {
                            r.replace(view.output(), r.builder().view(view.kind(), r.map(view.source()),
                                    view.output().type(), view.strides(), view.offset()));
                        }
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
