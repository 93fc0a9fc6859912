package dev.cortado.graph;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;

/**
 * Where each intermediate value of a graph lives: one arena per compiled graph, every value that
 * owns memory (an op's or a copy's output) at an offset assigned ahead of time. Liveness runs over
 * the node order: a value is live from the node that defines it to the last node that reads it or
 * any view of it. Offsets are assigned best-fit: buffers in order of decreasing size, each put in
 * the smallest gap, among the buffers whose lifetimes overlap its own, that holds it (or after them
 * all). Values the graph returns (and whatever they are views of) are not in the arena: each call
 * allocates them, since the caller keeps them.
 *
 * <p>In place: the output of an elementwise op (unary, binary, a fused program that loads before it
 * stores) whose input, of the same type and not a view, is read for the last time by that op shares
 * the input's memory (the kernels allow an output that is exactly an input); the two values then
 * form one slot, placed as one buffer over both lifetimes. Saved activations need nothing special:
 * a training graph's forward values read by its backward nodes live until that read.
 *
 * <p>{@link #eagerPeakBytes()} is what running the same nodes eagerly holds at its worst moment when
 * every tensor is freed right after its last read (the best an eager program can do, ignoring the
 * allocator's rounding); {@link #plannedPeakBytes()} is the arena plus the returned values.
 */
public final class MemoryPlan {
    /** Arena offsets are multiples of this (the host allocator's alignment; every dtype divides it). */
    public static final long ALIGNMENT = 64;

    /**
     * One value's place.
     *
     * @param value  the value (its type gives the size)
     * @param bytes  its size rounded up to {@link #ALIGNMENT}
     * @param first  the index of the node that defines it
     * @param last   the index of the last node that reads it (or a view of it)
     * @param offset its byte offset in the arena
     */
    public record Buffer(Value value, long bytes, int first, int last, long offset) {
        boolean overlapsInTime(Buffer o) {
            return first <= o.last && o.first <= last;
        }
    }

    private final List<Buffer> buffers;
    private final Map<Value, Buffer> byValue = new IdentityHashMap<>();
    private final List<Value> returned;
    private final long arenaBytes;
    private final long returnedBytes;
    private final long eagerPeakBytes;
    private final int inPlace;

    private MemoryPlan(List<Buffer> buffers, List<Value> returned, long arenaBytes, long returnedBytes, long eagerPeak,
            int inPlace) {
        this.inPlace = inPlace;
        this.buffers = List.copyOf(buffers);
        this.returned = List.copyOf(returned);
        this.arenaBytes = arenaBytes;
        this.returnedBytes = returnedBytes;
        this.eagerPeakBytes = eagerPeak;
        for (Buffer b : buffers) {
            byValue.put(b.value(), b);
        }
    }

    /** The value whose memory {@code v} reads: itself unless it is a view (then its source's root). */
    static Value root(Graph g, Value v) {
        Value r = v;
        while (g.producer(r) instanceof Node.View view) {
            r = view.source();
        }
        return r;
    }

    /** Plans {@code g}. */
    public static MemoryPlan plan(Graph g) {
        List<Node> nodes = g.nodes();
        Map<Value, Integer> first = new IdentityHashMap<>();
        Map<Value, Integer> last = new IdentityHashMap<>();
        List<Value> roots = new ArrayList<>();
        for (int i = 0; i < nodes.size(); i++) {
            Node n = nodes.get(i);
            for (Value in : n.inputs()) {
                if (in != null) {
                    last.put(root(g, in), i);
                }
            }
            if (!(n instanceof Node.View)) {
                for (Value out : n.outputs()) {
                    first.put(out, i);
                    last.putIfAbsent(out, i);
                    roots.add(out);
                }
            }
        }
        Map<Value, Boolean> escapes = new IdentityHashMap<>();
        for (Value out : g.outputs()) {
            escapes.put(root(g, out), true);
        }
        // in place: an elementwise output takes the memory of an input it reads for the last time
        Map<Value, Value> slotOf = new IdentityHashMap<>();
        for (int i = 0; i < nodes.size(); i++) {
            if (!(nodes.get(i) instanceof Node.OpCall c) || !elementwiseInPlace(c)) {
                continue;
            }
            for (Value out : c.outputs()) {
                if (escapes.containsKey(out)) {
                    continue;
                }
                for (Value in : c.inputs()) {
                    if (in != null && root(g, in) == in && first.containsKey(in) && last.get(in) == i
                            && !escapes.containsKey(in) && in.type().sameConcrete(out.type()) && !slotOf.containsValue(in)
                            && !taken(slotOf, in, c) && !readsThroughView(g, c, in)) {
                        slotOf.put(out, in);
                        break;
                    }
                }
            }
        }
        List<Buffer> pending = new ArrayList<>();
        List<Value> returned = new ArrayList<>();
        long returnedBytes = 0;
        Map<Value, Integer> slotLast = new IdentityHashMap<>();
        for (Value r : roots) {
            Value slot = slotRoot(slotOf, r);
            slotLast.merge(slot, last.get(r), Math::max);
        }
        for (Value r : roots) {
            if (escapes.containsKey(r)) {
                returned.add(r);
                returnedBytes += align(r.type().bytes());
            } else if (!slotOf.containsKey(r)) {
                pending.add(new Buffer(r, align(r.type().bytes()), first.get(r), slotLast.get(r), -1));
            }
        }
        // eager: allocate at definition, free after the last read (returned values live to the end)
        long live = 0;
        long peak = 0;
        for (int i = 0; i < nodes.size(); i++) {
            Node n = nodes.get(i);
            if (!(n instanceof Node.View)) {
                for (Value out : n.outputs()) {
                    live += align(out.type().bytes());
                }
            }
            peak = Math.max(peak, live);
            for (Value r : roots) {
                if (last.get(r) == i && first.get(r) <= i && !escapes.containsKey(r)) {
                    live -= align(r.type().bytes());
                }
            }
        }
        // best fit, largest first
        pending.sort(Comparator.comparingLong(Buffer::bytes).reversed().thenComparingInt(Buffer::first));
        List<Buffer> placed = new ArrayList<>();
        long arena = 0;
        for (Buffer b : pending) {
            List<Buffer> overlapping = new ArrayList<>();
            for (Buffer p : placed) {
                if (p.overlapsInTime(b)) {
                    overlapping.add(p);
                }
            }
            overlapping.sort(Comparator.comparingLong(Buffer::offset));
            long best = -1;
            long bestGap = Long.MAX_VALUE;
            long cursor = 0;
            for (Buffer p : overlapping) {
                long gap = p.offset() - cursor;
                if (gap >= b.bytes() && gap < bestGap) {
                    best = cursor;
                    bestGap = gap;
                }
                cursor = Math.max(cursor, p.offset() + p.bytes());
            }
            long offset = best >= 0 ? best : cursor;
            Buffer at = new Buffer(b.value(), b.bytes(), b.first(), b.last(), offset);
            placed.add(at);
            arena = Math.max(arena, offset + b.bytes());
        }
        // every value of a slot at the slot's offset, with its own lifetime
        Map<Value, Long> offsets = new IdentityHashMap<>();
        for (Buffer b : placed) {
            offsets.put(b.value(), b.offset());
        }
        List<Buffer> all = new ArrayList<>();
        for (Value r : roots) {
            if (!escapes.containsKey(r)) {
                all.add(new Buffer(r, align(r.type().bytes()), first.get(r), last.get(r), offsets.get(slotRoot(slotOf, r))));
            }
        }
        all.sort(Comparator.comparingInt(Buffer::first));
        return new MemoryPlan(all, returned, arena, returnedBytes, peak, slotOf.size());
    }

    /**
     * Ops whose kernels allow their output to be exactly one of their inputs (same memory, same
     * strides): the elementwise unary and binary ops (cortado/elementwise.h) and fused programs that
     * load every input before storing any output.
     */
    private static boolean elementwiseInPlace(Node.OpCall c) {
        String name = c.op().name();
        if (c.op() == FusedElementwise.OP) {
            FusedElementwise.Program p = (FusedElementwise.Program) c.attrs();
            int lastLoad = -1;
            int firstStore = Integer.MAX_VALUE;
            for (int i = 0; i < p.size(); i++) {
                if (p.kind(i) == FusedElementwise.Kind.LOAD) {
                    lastLoad = i;
                } else if (p.kind(i) == FusedElementwise.Kind.STORE) {
                    firstStore = Math.min(firstStore, i);
                }
            }
            return lastLoad < firstStore;
        }
        return FusedElementwise.UNARY_CODES.containsKey(name) || FusedElementwise.BINARY_CODES.containsKey(name);
    }

    /** Whether {@code c} also reads {@code in} through a view (other strides: not exactly in place). */
    private static boolean readsThroughView(Graph g, Node.OpCall c, Value in) {
        for (Value u : c.inputs()) {
            if (u != null && u != in && root(g, u) == in) {
                return true;
            }
        }
        return false;
    }

    /** Whether another output of {@code c} already took {@code in}. */
    private static boolean taken(Map<Value, Value> slotOf, Value in, Node.OpCall c) {
        for (Value out : c.outputs()) {
            if (slotOf.get(out) == in) {
                return true;
            }
        }
        return false;
    }

    private static Value slotRoot(Map<Value, Value> slotOf, Value v) {
        Value r = v;
        while (slotOf.containsKey(r)) {
            r = slotOf.get(r);
        }
        return r;
    }

    static long align(long bytes) {
        return (bytes + ALIGNMENT - 1) / ALIGNMENT * ALIGNMENT;
    }

    /** The arena's buffers, by definition order. */
    public List<Buffer> buffers() {
        return buffers;
    }

    /** The buffer of {@code v}, or null when it is not in the arena. */
    public Buffer buffer(Value v) {
        return byValue.get(v);
    }

    /** Values allocated at each call because the caller keeps them. */
    public List<Value> returned() {
        return returned;
    }

    public long arenaBytes() {
        return arenaBytes;
    }

    /** The arena plus the returned values. */
    public long plannedPeakBytes() {
        return arenaBytes + returnedBytes;
    }

    /** How many values were planned in place of an input (an elementwise output over a dead input). */
    public int inPlaceCount() {
        return inPlace;
    }

    /** The same nodes run eagerly, each tensor freed after its last read: the most held at once. */
    public long eagerPeakBytes() {
        return eagerPeakBytes;
    }

    @Override
    public String toString() {
        return "memory plan: " + buffers.size() + " buffers in an arena of " + arenaBytes + " bytes, "
                + returned.size() + " returned values of " + returnedBytes + " bytes, " + inPlace + " in place; planned peak "
                + plannedPeakBytes() + " bytes, eager peak " + eagerPeakBytes + " bytes";
    }
}
