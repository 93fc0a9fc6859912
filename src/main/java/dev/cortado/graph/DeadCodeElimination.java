package dev.cortado.graph;

import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Set;

/**
 * Removes nodes none of whose outputs reach a graph output or an update, and the parameters and
 * constants nothing reads any more. Every node but an {@link Node.Update} is free of side effects
 * (capture refuses the ops that are not), so an unread result can go; updates are always live. One
 * backward walk: a node is live when it is an update or one of its outputs is read by a live node or
 * returned.
 */
public final class DeadCodeElimination implements Pass {
    @Override
    public String name() {
        return "dce";
    }

    @Override
    public Graph apply(Graph g) {
        Set<Value> live = Collections.newSetFromMap(new IdentityHashMap<>());
        live.addAll(g.outputs());
        List<Node> nodes = g.nodes();
        boolean[] keep = new boolean[nodes.size()];
        for (int i = nodes.size() - 1; i >= 0; i--) {
            Node n = nodes.get(i);
            keep[i] = n instanceof Node.Update; // a side effect: always live
            for (Value out : n.outputs()) {
                if (live.contains(out)) {
                    keep[i] = true;
                    break;
                }
            }
            if (keep[i]) {
                for (Value in : n.inputs()) {
                    if (in != null) {
                        live.add(in);
                    }
                }
            }
        }
        Rewriter r = new Rewriter(g);
        for (int i = 0; i < nodes.size(); i++) {
            if (keep[i]) {
                r.copy(nodes.get(i));
            }
        }
        return r.finish();
    }
}
