package dev.cortado.tensor;

import java.util.ArrayList;

/**
 * Frees, when closed, every tensor created inside it on this thread (views included) except
 * those {@linkplain #keep(Tensor) kept}, which move to the enclosing scope (or become unowned
 * when there is none):
 *
 * <pre>{@code
 * Tensor result;
 * try (var scope = Scope.open()) {
 *     Tensor h = Ops.relu(Ops.matmul(x, w));   // freed at the end of the block
 *     result = scope.keep(Ops.sum(h));         // survives it
 * }
 * }</pre>
 *
 * Scopes nest and belong to the thread that opened them; they must be closed innermost first.
 * Using a scope ({@link #keep}, {@link #close}) or closing a tensor it owns from another thread
 * throws {@link IllegalStateException} naming the threads (and the tensor), instead of racing the
 * owner thread's bookkeeping.
 */
public final class Scope implements AutoCloseable {
    private static final ThreadLocal<Scope> CURRENT = new ThreadLocal<>();

    private final Scope parent;
    private final Thread owner;
    private final boolean detached;
    private final ArrayList<Tensor> owned = new ArrayList<>();
    private int closedSinceCompaction;
    private boolean closed;

    private Scope(Scope parent, boolean detached) {
        this.parent = parent;
        this.owner = Thread.currentThread();
        this.detached = detached;
    }

    /** Opens a scope nested in the current one of this thread. */
    public static Scope open() {
        Scope scope = new Scope(CURRENT.get(), false);
        CURRENT.set(scope);
        return scope;
    }

    /**
     * Opens a region in which new tensors belong to no scope (the code that creates them closes
     * them): autograd uses it for the tensors it saves and for gradients, whose lifetime follows
     * the tape and the parameters rather than the user's scopes.
     */
    public static Scope detached() {
        Scope scope = new Scope(CURRENT.get(), true);
        CURRENT.set(scope);
        return scope;
    }

    /** The innermost open scope of this thread, or null. */
    static Scope current() {
        return CURRENT.get();
    }

    /** Records {@code tensor} as owned; false in a detached region, where nothing is owned. */
    boolean register(Tensor tensor) {
        if (detached) {
            return false;
        }
        owned.add(tensor);
        return true;
    }

    /** Called when an owned tensor is closed explicitly; occasionally drops closed entries. */
    void onClosed() {
        if (closed) {
            return;
        }
        if (++closedSinceCompaction > 64 && closedSinceCompaction > owned.size() / 2) {
            owned.removeIf(Tensor::isClosed);
            closedSinceCompaction = 0;
        }
    }

    /**
     * Keeps {@code tensor} alive past this scope: it moves to the enclosing scope, or is owned
     * by nobody (the caller closes it) when this is the outermost scope.
     */
    public <T extends Tensor> T keep(T tensor) {
        checkOpen();
        if (tensor.owner() != this) {
            throw new IllegalArgumentException("tensor " + tensor.describe() + " is not owned by this scope");
        }
        for (int i = owned.size() - 1; i >= 0; i--) {
            if (owned.get(i) == tensor) {
                owned.remove(i);
                break;
            }
        }
        tensor.setOwner(parent != null && parent.register(tensor) ? parent : null);
        return tensor;
    }

    /** Whether {@code tensor} is owned by this scope (it would be freed by {@link #close()}). */
    public boolean owns(Tensor tensor) {
        return tensor.owner() == this;
    }

    /** Number of tensors this scope will free if closed now. */
    public int size() {
        int n = 0;
        for (Tensor t : owned) {
            if (!t.isClosed()) {
                n++;
            }
        }
        return n;
    }

    private void checkOpen() {
        if (closed) {
            throw new IllegalStateException("scope is closed");
        }
        Thread caller = Thread.currentThread();
        if (caller != owner) {
            throw new IllegalStateException("scope opened on thread '" + owner.getName()
                    + "' cannot be used from thread '" + caller.getName() + "' (a scope belongs to its thread)");
        }
    }

    /**
     * Throws unless the caller is this scope's thread: {@code what} (e.g. close) of the owned
     * {@code tensor} from another thread would race the scope's own bookkeeping and close.
     */
    void checkThread(String what, Tensor tensor) {
        Thread caller = Thread.currentThread();
        if (caller != owner) {
            throw new IllegalStateException(what + ": tensor " + tensor.describe() + " belongs to a scope of thread '"
                    + owner.getName() + "' and cannot be closed from thread '" + caller.getName()
                    + "' (close it on its thread, or keep() it out of the scope before handing it over)");
        }
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        checkOpen();
        if (CURRENT.get() != this) {
            throw new IllegalStateException("scopes must be closed innermost first");
        }
        closed = true;
        CURRENT.set(parent);
        RuntimeException first = null;
        for (int i = owned.size() - 1; i >= 0; i--) {
            Tensor t = owned.get(i);
            try {
                t.close();
            } catch (RuntimeException e) {
                if (first == null) {
                    first = e;
                } else {
                    first.addSuppressed(e);
                }
            }
        }
        owned.clear();
        if (first != null) {
            throw first;
        }
    }
}
