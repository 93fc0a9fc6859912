package dev.cortado.graph;

import dev.cortado.ops.Elementwise;
import dev.cortado.tensor.DType;
import dev.cortado.tensor.DeviceType;
import dev.cortado.tensor.Tensor;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.IdentityHashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Fuses chains of elementwise ops (the unary ops of {@code ops/unary.def} but the boolean one, the
 * arithmetic binary ops and the activation gradients of {@code ops/binary.def}) into one
 * {@code fused_elementwise} node ({@link FusedElementwise}) that reads the chain's inputs once and
 * writes the values read outside it once.
 *
 * <p>Grouping, in node order: a fusable node joins the group of one of its fusable producers when
 * its output has the group's type (the same dims, dtype and a CPU device: a group iterates over
 * one shape) and no node outside the group reads a member's output before this node (the fused
 * node takes the place of the group's last member, so such a reader would run before its input
 * exists). Inputs of other dtypes are not fused, except scalar constants, which become
 * instructions (rounded to the program's dtype first, as the eager kernel converts them). A node
 * that is not fusable (a comparison, a reduction, an op of another dtype) ends the chain.
 *
 * <p>Program: the inputs are loaded first (so an output may later be planned over a dead input);
 * then one instruction per member, each result in a register freed after its last read in the
 * group; a member read outside the group, or returned, is stored as an output. A group that needs
 * more than the interpreter's registers, inputs, outputs or instructions stays unfused.
 */
public final class ElementwiseFusion implements Pass {
    @Override
    public String name() {
        return "fuse-elementwise";
    }

    private static boolean fusableOp(Node n) {
        if (!(n instanceof Node.OpCall c)) {
            return false;
        }
        String name = c.op().name();
        boolean unary = FusedElementwise.UNARY_CODES.containsKey(name) && c.attrs() instanceof Elementwise.Params;
        boolean binary = FusedElementwise.BINARY_CODES.containsKey(name) && c.inputs().size() == 2;
        if (!unary && !binary) {
            return false;
        }
        TensorType t = c.outputs().get(0).type();
        DType dt = t.dtype();
        if (!(dt == DType.FLOAT32 || dt == DType.FLOAT64 || dt == DType.FLOAT16 || dt == DType.BFLOAT16)
                || t.device().type() != DeviceType.CPU) {
            return false;
        }
        for (Value v : c.inputs()) {
            if (v == null || (v.type().dtype() != dt && !scalarConstant(v))) {
                return false;
            }
        }
        return true;
    }

    private static boolean scalarConstant(Value v) {
        return v.isConstant() && v.tensor() != null && v.tensor().numel() == 1 && !v.type().dtype().isPacked();
    }

    @Override
    public Graph apply(Graph g) {
        List<Node> nodes = g.nodes();
        Map<Node, Integer> position = new IdentityHashMap<>();
        for (int i = 0; i < nodes.size(); i++) {
            position.put(nodes.get(i), i);
        }
        // readers of each value (node positions), and the returned values
        Map<Value, List<Integer>> readers = new IdentityHashMap<>();
        for (int i = 0; i < nodes.size(); i++) {
            for (Value v : nodes.get(i).inputs()) {
                if (v != null) {
                    readers.computeIfAbsent(v, k -> new ArrayList<>()).add(i);
                }
            }
        }
        Map<Value, Boolean> returned = new IdentityHashMap<>();
        for (Value v : g.outputs()) {
            returned.put(v, true);
        }
        // grouping
        Map<Node, List<Node>> groupOf = new IdentityHashMap<>();
        for (int i = 0; i < nodes.size(); i++) {
            Node n = nodes.get(i);
            if (!fusableOp(n)) {
                continue;
            }
            TensorType type = n.outputs().get(0).type();
            // join every producer's group that allows it (merging them): n then reads their values in registers
            List<Node> joined = new ArrayList<>();
            for (Value in : n.inputs()) {
                Node p = in == null ? null : g.producer(in);
                List<Node> group = p == null ? null : groupOf.get(p);
                if (group == null || group == joined || !group.get(0).outputs().get(0).type().equals(type)
                        || !canJoin(group, i, readers, position)) {
                    continue;
                }
                joined.addAll(group);
                for (Node m : group) {
                    groupOf.put(m, joined);
                }
            }
            joined.sort((a, b) -> Integer.compare(position.get(a), position.get(b)));
            joined.add(n);
            groupOf.put(n, joined);
        }
        // emission: a group at its last member
        Rewriter r = new Rewriter(g);
        for (Node n : nodes) {
            List<Node> group = groupOf.get(n);
            if (group == null || group.size() < 2) {
                r.copy(n);
                continue;
            }
            if (group.get(group.size() - 1) != n) {
                continue; // emitted with the last member
            }
            if (!emit(group, r, readers, position, returned)) {
                for (Node m : group) {
                    r.copy(m);
                }
            }
        }
        return r.finish();
    }

    /** No reader outside {@code group} + {@code n} of a member's output runs before {@code n} (at {@code at}). */
    private static boolean canJoin(List<Node> group, int at, Map<Value, List<Integer>> readers, Map<Node, Integer> position) {
        for (Node m : group) {
            for (Value v : m.outputs()) {
                for (int reader : readers.getOrDefault(v, List.of())) {
                    if (reader < at && !memberAt(group, reader, position)) {
                        return false;
                    }
                }
            }
        }
        return true;
    }

    /** Writes the group's program and node; false when it does not fit the interpreter. */
    private static boolean emit(List<Node> group, Rewriter r, Map<Value, List<Integer>> readers, Map<Node, Integer> position,
            Map<Value, Boolean> returned) {
        Map<Value, Boolean> members = new IdentityHashMap<>();
        int last = position.get(group.get(group.size() - 1));
        for (Node m : group) {
            members.put(m.outputs().get(0), true);
        }
        DType dt = group.get(0).outputs().get(0).type().dtype();
        // the external inputs, in order of first use; scalar constants of another dtype become CONSTs
        Map<Value, Integer> inputs = new LinkedHashMap<>();
        Map<Value, Double> constants = new LinkedHashMap<>();
        for (Node m : group) {
            for (Value v : m.inputs()) {
                if (members.containsKey(v) || inputs.containsKey(v) || constants.containsKey(v)) {
                    continue;
                }
                if (v.type().dtype() != dt) {
                    constants.put(v, roundedScalar(v.tensor(), dt));
                } else {
                    inputs.put(v, inputs.size());
                }
            }
        }
        // the members read outside the group or returned
        List<Value> outputs = new ArrayList<>();
        for (Node m : group) {
            Value v = m.outputs().get(0);
            boolean outside = returned.containsKey(v);
            for (int reader : readers.getOrDefault(v, List.of())) {
                outside |= reader > last || !memberAt(group, reader, position);
            }
            if (outside) {
                outputs.add(v);
            }
        }
        if (inputs.isEmpty() || inputs.size() > FusedElementwise.MAX_INPUTS || outputs.isEmpty()
                || outputs.size() > FusedElementwise.MAX_OUTPUTS) {
            return false;
        }
        // last read of each register-held value inside the group (member index)
        Map<Value, Integer> lastRead = new IdentityHashMap<>();
        for (int k = 0; k < group.size(); k++) {
            for (Value v : group.get(k).inputs()) {
                lastRead.put(v, k);
            }
        }
        FusedElementwise.ProgramBuilder b = FusedElementwise.program();
        Map<Value, Integer> reg = new IdentityHashMap<>();
        boolean[] busy = new boolean[FusedElementwise.MAX_REGISTERS];
        int instructions = 0;
        for (Map.Entry<Value, Integer> e : inputs.entrySet()) {
            int rr = take(busy);
            if (rr < 0) {
                return false;
            }
            b.load(rr, e.getValue());
            reg.put(e.getKey(), rr);
            instructions++;
        }
        for (Map.Entry<Value, Double> e : constants.entrySet()) {
            int rr = take(busy);
            if (rr < 0) {
                return false;
            }
            b.constant(rr, e.getValue());
            reg.put(e.getKey(), rr);
            instructions++;
        }
        for (int k = 0; k < group.size(); k++) {
            Node.OpCall c = (Node.OpCall) group.get(k);
            int a = reg.get(c.inputs().get(0));
            Integer bb = c.inputs().size() > 1 ? reg.get(c.inputs().get(1)) : null;
            // free the registers whose last read is this member before choosing the destination
            for (Value v : c.inputs()) {
                if (lastRead.get(v) == k) {
                    busy[reg.get(v)] = false;
                }
            }
            int dst = take(busy);
            if (dst < 0) {
                return false;
            }
            String name = c.op().name();
            if (bb == null) {
                Elementwise.Params p = (Elementwise.Params) c.attrs();
                b.unary(FusedElementwise.UNARY_CODES.get(name), dst, a, p.p0(), p.p1());
            } else {
                b.binary(FusedElementwise.BINARY_CODES.get(name), dst, a, bb);
            }
            instructions++;
            Value out = c.outputs().get(0);
            reg.put(out, dst);
            int o = outputs.indexOf(out);
            if (o >= 0) {
                b.store(o, dst);
                instructions++;
                if (!lastRead.containsKey(out)) {
                    busy[dst] = false;
                }
            }
            if (instructions > FusedElementwise.MAX_INSTRUCTIONS) {
                return false;
            }
        }
        FusedElementwise.Program program = b.build();
        List<Value> in = new ArrayList<>();
        for (Value v : inputs.keySet()) {
            in.add(r.map(v));
        }
        List<TensorType> types = new ArrayList<>();
        for (Value v : outputs) {
            types.add(v.type());
        }
        List<Value> outs = r.builder().op(FusedElementwise.OP, program, in, types);
        for (int o = 0; o < outputs.size(); o++) {
            r.replace(outputs.get(o), outs.get(o));
        }
        return true;
    }

    private static boolean memberAt(List<Node> group, int reader, Map<Node, Integer> position) {
        for (Node m : group) {
            if (position.get(m) == reader) {
                return true;
            }
        }
        return false;
    }

    private static int take(boolean[] busy) {
        for (int i = 0; i < busy.length; i++) {
            if (!busy[i]) {
                busy[i] = true;
                return i;
            }
        }
        return -1;
    }

    /** A scalar constant's value in {@code dt} (as the eager kernel converts it), as a double. */
    private static double roundedScalar(Tensor t, DType dt) {
        try (Tensor c = t.to(dt)) {
            return c.item();
        }
    }
}
