package dev.cortado.graph;

import dev.cortado.ops.Op;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;

/**
 * A step of a graph. Four kinds: a call of a registered op ({@link OpCall}, run by the op's own
 * kernel), a view ({@link View}: new sizes and strides over its source's memory, no data moved),
 * a copy ({@link Copy}: a strided copy, possibly to another dtype or device), the last two being
 * what {@code Tensor}'s view and conversion methods do outside the op registry, and an in-place
 * update of parameters ({@link Update}: an optimizer step, a buffer assignment), the one kind with
 * a side effect.
 */
public sealed interface Node permits Node.OpCall, Node.View, Node.Copy, Node.Update {

    /** The values read, in order (an op's absent optional input is null). */
    List<Value> inputs();

    /** The values defined. */
    List<Value> outputs();

    /** What the text form and the DOT rendering call this node: the op's name, {@code view.permute}, {@code copy.to}. */
    String label();

    /** The attributes as text ({@code ""} when none). */
    String attributes();

    /**
     * A call of {@code op} with {@code attrs} (the declaration's attribute record, or null).
     *
     * @param op      the registered declaration
     * @param attrs   its attributes (compared with {@code equals} by common-subexpression elimination)
     * @param inputs  one entry per input (null for an absent optional one)
     * @param outputs one value per output of the declaration's shape rule
     */
    record OpCall(Op<?> op, Object attrs, List<Value> inputs, List<Value> outputs) implements Node {
        public OpCall {
            inputs = Collections.unmodifiableList(new ArrayList<>(inputs));
            outputs = List.copyOf(outputs);
        }

        @Override
        public String label() {
            return op.name();
        }

        /** The attribute record as {@code name=value} pairs (arrays spelled out), or its toString. */
        @Override
        public String attributes() {
            if (attrs == null) {
                return "";
            }
            java.lang.reflect.RecordComponent[] parts = attrs.getClass().getRecordComponents();
            if (parts == null) {
                return attrs.toString();
            }
            StringBuilder s = new StringBuilder();
            for (java.lang.reflect.RecordComponent p : parts) {
                Object v;
                try {
                    v = p.getAccessor().invoke(attrs);
                } catch (ReflectiveOperationException | RuntimeException e) {
                    return attrs.toString();
                }
                s.append(s.length() == 0 ? "" : ", ").append(p.getName()).append('=').append(text(v));
            }
            return s.toString();
        }

        private static String text(Object v) {
            if (v instanceof long[] a) {
                return Arrays.toString(a);
            }
            if (v instanceof int[] a) {
                return Arrays.toString(a);
            }
            if (v instanceof double[] a) {
                return Arrays.toString(a);
            }
            if (v instanceof Object[] a) {
                return Arrays.toString(a);
            }
            return String.valueOf(v);
        }
    }

    /**
     * A view: {@code output} reads {@code source}'s memory with its own sizes (its type), the given
     * element {@code strides} and an element {@code offset} from {@code source}'s first element.
     * Strides are in the units of the memory the source reads, so they assume the source's layout at
     * capture, which replay keeps: node outputs and inputs are contiguous, parameters are the
     * same tensors.
     *
     * @param kind what made it (reshape, permute, expand, slice, ...), for reading only
     */
    record View(String kind, Value source, Value output, long[] strides, long offset) implements Node {
        public View {
            strides = strides.clone();
            if (strides.length != output.type().rank()) {
                throw new IllegalArgumentException("view." + kind + ": " + strides.length + " strides for "
                        + output.type());
            }
        }

        @Override
        public long[] strides() {
            return strides.clone();
        }

        @Override
        public List<Value> inputs() {
            return List.of(source);
        }

        @Override
        public List<Value> outputs() {
            return List.of(output);
        }

        @Override
        public String label() {
            return "view." + kind;
        }

        @Override
        public String attributes() {
            return "strides=" + Arrays.toString(strides) + ", offset=" + offset;
        }
    }

    /**
     * A copy of {@code source} into a new contiguous value {@code output} of the same sizes, converted
     * to {@code output}'s dtype and moved to its device.
     *
     * @param kind what made it (to, contiguous, copy), for reading only
     */
    record Copy(String kind, Value source, Value output) implements Node {
        @Override
        public List<Value> inputs() {
            return List.of(source);
        }

        @Override
        public List<Value> outputs() {
            return List.of(output);
        }

        @Override
        public String label() {
            return "copy." + kind;
        }

        @Override
        public String attributes() {
            return "";
        }
    }

    /**
     * What an {@link Update} node runs: writes new values into {@code writes} in place, reading
     * {@code reads} (and the old values of {@code writes}). Runs at every execution of the graph,
     * so it reads whatever changes per step (a learning rate, a step count) when it runs.
     */
    interface UpdateRule {
        /**
         * Runs the update.
         *
         * @param reads  the tensors of the node's {@code reads}, in order
         * @param writes the tensors of the node's {@code writes} (the parameters themselves), in order
         */
        void run(List<dev.cortado.tensor.Tensor> reads, List<dev.cortado.tensor.Tensor> writes);
    }

    /**
     * An in-place update: {@code rule} writes new values into {@code writes}, graph parameters
     * (tensors held by reference, such as a model's weights and an optimizer's state), reading
     * {@code reads} (node values such as gradients) and the old values of {@code writes}. It defines
     * no value, so nothing reads its result through a data edge; the ordering rule that replaces
     * that edge, checked by the {@link Verifier} and kept by every pass: an update is the last
     * access of what it writes in the graph, after every node that reads those parameters (through
     * views or not), and no other update writes them. Passes never drop, merge or recompute an
     * update, and the memory plan never places a parameter in the arena.
     *
     * @param kind   what it is ({@code optimizer}, {@code assign}), for reading; the label is {@code update.<kind>}
     * @param rule   what runs
     * @param reads  the values read (gradients, assigned values)
     * @param writes the parameters written in place
     */
    record Update(String kind, UpdateRule rule, List<Value> reads, List<Value> writes) implements Node {
        public Update {
            reads = List.copyOf(reads);
            writes = List.copyOf(writes);
        }

        /** {@code reads} then {@code writes}: an update reads the old values of what it writes. */
        @Override
        public List<Value> inputs() {
            List<Value> all = new ArrayList<>(reads);
            all.addAll(writes);
            return Collections.unmodifiableList(all);
        }

        /** None: an update defines no value. */
        @Override
        public List<Value> outputs() {
            return List.of();
        }

        @Override
        public String label() {
            return "update." + kind;
        }

        /** The rule's text and which inputs are written. */
        @Override
        public String attributes() {
            return "rule=" + rule + ", writes=" + writes.size() + " (last " + writes.size() + " inputs)";
        }
    }
}
