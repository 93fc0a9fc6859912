package dev.cortado.graph;

import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;

/**
 * Reorders the nodes to lower the memory held at once (the executor's schedule is the node order).
 * Greedy list scheduling: among the nodes whose inputs are all computed, run next the one that adds
 * the fewest bytes net, its outputs' bytes minus the bytes of the values it reads for the last time
 * (a value lives as long as it or a view of it is still to be read; returned values are never
 * freed); ties keep the captured order. A capture runs branches in the order the Java code wrote
 * them, so a function that computes several large intermediates before reducing each one holds them
 * all at once; this order computes and reduces them one after another.
 */
public final class MemoryAwareSchedule implements Pass {
    @Override
    public String name() {
        return "schedule";
    }

    @Override
    public Graph apply(Graph g) {
        List<Node> nodes = g.nodes();
        int n = nodes.size();
        Map<Value, Integer> producerIndex = new IdentityHashMap<>();
        for (int i = 0; i < n; i++) {
            for (Value v : nodes.get(i).outputs()) {
                producerIndex.put(v, i);
            }
        }
        // readers left for each root (values owning memory), counting reads of views of it
        Map<Value, Integer> readsLeft = new IdentityHashMap<>();
        List<List<Value>> rootsRead = new ArrayList<>();
        int[] missing = new int[n];
        List<List<Integer>> consumers = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            consumers.add(new ArrayList<>());
        }
        for (int i = 0; i < n; i++) {
            List<Value> roots = new ArrayList<>();
            for (Value in : nodes.get(i).inputs()) {
                if (in == null) {
                    continue;
                }
                Integer p = producerIndex.get(in);
                if (p != null) {
                    missing[i]++;
                    consumers.get(p).add(i);
                }
                Value root = MemoryPlan.root(g, in);
                if (producerIndex.containsKey(root) && !roots.contains(root)) {
                    roots.add(root);
                    readsLeft.merge(root, 1, Integer::sum);
                }
            }
            rootsRead.add(roots);
        }
        // updates: no data edge orders them, so each one waits for every node that reads what it writes (through views)
        // and runs before every node placed after it that does; the update stays the last access in practice
        for (int u = 0; u < n; u++) {
            if (!(nodes.get(u) instanceof Node.Update update)) {
                continue;
            }
            java.util.Set<Value> written = java.util.Collections.newSetFromMap(new IdentityHashMap<>());
            written.addAll(update.writes());
            for (int i = 0; i < n; i++) {
                if (i == u) {
                    continue;
                }
                boolean reads = false;
                for (Value in : nodes.get(i).inputs()) {
                    reads |= in != null && written.contains(MemoryPlan.root(g, in));
                }
                if (reads && i < u) {
                    missing[u]++;
                    consumers.get(i).add(u);
                } else if (reads) {
                    missing[i]++;
                    consumers.get(u).add(i);
                }
            }
        }
        Map<Value, Boolean> returned = new IdentityHashMap<>();
        for (Value out : g.outputs()) {
            returned.put(MemoryPlan.root(g, out), true);
        }
        List<Integer> ready = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            if (missing[i] == 0) {
                ready.add(i);
            }
        }
        Rewriter r = new Rewriter(g);
        while (!ready.isEmpty()) {
            int best = -1;
            long bestScore = Long.MAX_VALUE;
            for (int i : ready) {
                long score = allocated(nodes.get(i));
                for (Value root : rootsRead.get(i)) {
                    if (readsLeft.get(root) == 1 && !returned.containsKey(root)) {
                        score -= MemoryPlan.align(root.type().bytes());
                    }
                }
                if (score < bestScore || (score == bestScore && i < best)) {
                    best = i;
                    bestScore = score;
                }
            }
            ready.remove(Integer.valueOf(best));
            r.copy(nodes.get(best));
            for (Value root : rootsRead.get(best)) {
                readsLeft.merge(root, -1, Integer::sum);
            }
            for (int c : consumers.get(best)) {
                if (--missing[c] == 0) {
                    ready.add(c);
                }
            }
        }
        return r.finish();
    }

    private static long allocated(Node n) {
        if (n instanceof Node.View) {
            return 0;
        }
        long bytes = 0;
        for (Value v : n.outputs()) {
            bytes += MemoryPlan.align(v.type().bytes());
        }
        return bytes;
    }
}
