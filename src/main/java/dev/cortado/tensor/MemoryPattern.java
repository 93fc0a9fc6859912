package dev.cortado.tensor;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.atomic.AtomicIntegerArray;

/**
 * The allocations one run of a deterministic program makes on one device, recorded once and
 * planned into one arena, so that later runs of the same shapes take every tensor from that
 * arena instead of from the allocator: a steady stream of requests then allocates no native
 * memory at all (ONNX Runtime calls the same idea its "memory pattern").
 *
 * <pre>{@code
 * MemoryPattern pattern;
 * try (MemoryPattern.Recording r = MemoryPattern.record(Device.CPU)) {
 *     runOnce(inputs);                          // allocates as usual; sizes and lifetimes noted
 *     pattern = r.finish();
 * }
 * try (MemoryPattern.Arena arena = pattern.newArena()) {   // one allocation, pattern.arenaBytes()
 *     for (...) {
 *         try (MemoryPattern.Replay replay = arena.replay()) {
 *             runOnce(inputs);                  // every allocation is a slice of the arena
 *         }
 *     }
 * }
 * }</pre>
 *
 * <p><b>Recording.</b> While a {@link Recording} is open, every allocation its thread makes on the
 * device ({@code Tensor.empty}, {@code zeros}, op outputs...) is noted with its size and the
 * event clock at which it is made and freed (the clock ticks at each allocation and each free).
 * Memory still held when {@link Recording#finish()} is called lives to the end.
 *
 * <p><b>Planning.</b> Each allocation gets a byte offset in one arena (64-byte aligned): largest
 * first, each in the smallest gap left by the already placed allocations whose lifetimes overlap
 * its own (best fit), so two allocations share memory only when one was freed before the other
 * was made. For every allocation the plan also lists the earlier ones whose memory it reuses.
 *
 * <p><b>Replay.</b> While a {@link Replay} is open, the thread's i-th allocation on the device,
 * if it has the recorded size, is a view of the arena at the planned offset; its release frees
 * nothing. The replay is checked as it goes: an allocation of another size, more allocations than
 * recorded, or an earlier allocation that shares the slot's memory and is still alive (the run
 * freed later than the recording did) ends the replay there: that and every later allocation of
 * the run come from the allocator as usual ({@link Replay#diverged()}), so a run that strays from
 * its pattern is slower, never wrong. A caller that sees a divergence records again.
 *
 * <p><b>Arenas.</b> An {@link Arena} serves one replay at a time. Its memory is reference counted
 * like any storage: each slice holds a reference, so a tensor that outlives its run (a result not
 * copied out) keeps the arena's memory valid; such an arena is not {@link Arena#reusable()} until
 * that tensor is closed. Closing an arena frees its memory once its last slice is gone.
 */
public final class MemoryPattern {
    private static final long ALIGN = 64;

    private final Device device;
    private final long[] sizes;
    private final long[] offsets;
    /** For allocation i, the earlier allocations whose memory overlaps its slot (they must be freed first). */
    private final int[][] reuses;
    private final long arenaBytes;

    private MemoryPattern(Device device, long[] sizes, long[] starts, long[] ends) {
        this.device = device;
        this.sizes = sizes;
        int n = sizes.length;
        this.offsets = new long[n];
        this.arenaBytes = plan(sizes, starts, ends, offsets);
        this.reuses = new int[n][];
        for (int i = 0; i < n; i++) {
            List<Integer> earlier = new ArrayList<>();
            long lo = offsets[i];
            long hi = lo + aligned(sizes[i]);
            for (int j = 0; j < i; j++) {
                if (offsets[j] < hi && lo < offsets[j] + aligned(sizes[j])) {
                    earlier.add(j);
                }
            }
            reuses[i] = earlier.stream().mapToInt(Integer::intValue).toArray();
        }
    }

    private static long aligned(long bytes) {
        return Math.max(ALIGN, (bytes + ALIGN - 1) / ALIGN * ALIGN);
    }

    /**
     * Best-fit offsets (into {@code offsets}) for allocations of {@code sizes} living
     * {@code [starts[i], ends[i])}; returns the arena size.
     */
    static long plan(long[] sizes, long[] starts, long[] ends, long[] offsets) {
        int n = sizes.length;
        Integer[] order = new Integer[n];
        for (int i = 0; i < n; i++) {
            order[i] = i;
        }
        Arrays.sort(order, Comparator.<Integer>comparingLong(i -> -aligned(sizes[i])).thenComparingLong(i -> starts[i]));
        List<Integer> placed = new ArrayList<>();
        long total = 0;
        long[][] busy = new long[n][];
        for (int i : order) {
            long size = aligned(sizes[i]);
            int count = 0;
            for (int j : placed) {
                if (starts[i] < ends[j] && starts[j] < ends[i]) {
                    busy[count++] = new long[] {offsets[j], offsets[j] + aligned(sizes[j])};
                }
            }
            Arrays.sort(busy, 0, count, Comparator.comparingLong(r -> r[0]));
            long best = -1;
            long bestGap = Long.MAX_VALUE;
            long cursor = 0;
            for (int k = 0; k < count; k++) {
                long gap = busy[k][0] - cursor;
                if (gap >= size && gap < bestGap) {
                    best = cursor;
                    bestGap = gap;
                }
                cursor = Math.max(cursor, busy[k][1]);
            }
            offsets[i] = best >= 0 ? best : cursor;
            total = Math.max(total, offsets[i] + size);
            placed.add(i);
        }
        return total;
    }

    /** Starts recording the allocations this thread makes on {@code device}; close the recording to stop. */
    public static Recording record(Device device) {
        return new Recording(Objects.requireNonNull(device, "device"));
    }

    /**
     * How many tensor storages this process has allocated from a backend (any device) since it
     * started: a replayed allocation, a slice of an arena, is not one; an arena is. Kernel
     * workspaces are not tensor storage and are not counted here (the host allocator's own
     * counters, {@code Cortado.hostAllocationCounts()}, count them too).
     */
    public static long storageAllocations() {
        return Storage.FROM_BACKEND.sum();
    }

    /** The device of the recorded allocations. */
    public Device device() {
        return device;
    }

    /** How many allocations the recorded run made. */
    public int allocations() {
        return sizes.length;
    }

    /** The bytes of one arena: the most the recorded run held at once, as planned. */
    public long arenaBytes() {
        return arenaBytes;
    }

    /** The sum of the recorded allocations' sizes (what the run would hold if nothing were ever freed). */
    public long totalBytes() {
        long t = 0;
        for (long s : sizes) {
            t += aligned(s);
        }
        return t;
    }

    /** Allocates one arena for replays of this pattern (one allocation of {@link #arenaBytes()}). */
    public Arena newArena() {
        return new Arena(this);
    }

    @Override
    public String toString() {
        return "MemoryPattern[" + sizes.length + " allocations on " + device + ", arena " + arenaBytes + " of "
                + totalBytes() + " bytes]";
    }

    /** An open recording of one thread's allocations ({@link #record}). */
    public static final class Recording implements AutoCloseable {
        private final Device device;
        private final Storage.Interceptor previous;
        private final List<long[]> events = new ArrayList<>(); // {size, start, end}
        private long clock;
        private boolean open = true;

        private Recording(Device device) {
            this.device = device;
            this.previous = Storage.intercept(this::allocate);
        }

        private Storage allocate(Device d, long bytes) {
            if (!d.equals(device)) {
                return previous == null ? null : previous.allocate(d, bytes);
            }
            long[] event;
            synchronized (this) {
                event = new long[] {bytes, clock++, Long.MAX_VALUE};
                events.add(event);
            }
            return Storage.fromBackend(d, bytes, s -> freed(event));
        }

        private synchronized void freed(long[] event) {
            if (open) {
                event[2] = clock++;
            }
        }

        /** Stops recording (if still open) and plans what was recorded. */
        public synchronized MemoryPattern finish() {
            close();
            int n = events.size();
            long[] sizes = new long[n];
            long[] starts = new long[n];
            long[] ends = new long[n];
            for (int i = 0; i < n; i++) {
                long[] e = events.get(i);
                sizes[i] = e[0];
                starts[i] = e[1];
                ends[i] = e[2];
            }
            return new MemoryPattern(device, sizes, starts, ends);
        }

        /** Stops recording; later frees count as never happening (those allocations live to the end). */
        @Override
        public synchronized void close() {
            if (open) {
                open = false;
                Storage.intercept(previous);
            }
        }
    }

    /** The memory of one pattern's runs, one at a time ({@link #newArena()}). */
    public static final class Arena implements AutoCloseable {
        private final MemoryPattern pattern;
        private final Storage backing;
        /** Per allocation: 1 while its slice of the current replay is alive. */
        private final AtomicIntegerArray alive;
        private boolean replaying;
        private boolean closed;

        private Arena(MemoryPattern pattern) {
            this.pattern = pattern;
            this.backing = Storage.fromBackend(pattern.device, Math.max(ALIGN, pattern.arenaBytes), null);
            this.alive = new AtomicIntegerArray(pattern.sizes.length);
        }

        /** The pattern this arena replays. */
        public MemoryPattern pattern() {
            return pattern;
        }

        /** The bytes this arena holds on its device (one allocation: the pattern's arena, at least one alignment unit). */
        public long bytes() {
            return backing.bytes;
        }

        /**
         * Whether a replay may start: no replay is running and no tensor of an earlier replay is
         * still open (its memory would be handed out again).
         */
        public synchronized boolean reusable() {
            return !closed && !replaying && backing.references() == 1;
        }

        /**
         * Starts a replay on this thread: its allocations on the pattern's device are slices of this
         * arena, in the recorded order, until the replay is closed.
         *
         * @throws IllegalStateException when the arena is not {@link #reusable()}
         */
        public synchronized Replay replay() {
            if (!reusable()) {
                throw new IllegalStateException(closed ? "the memory arena is closed"
                        : replaying ? "the memory arena is already replaying a run"
                        : "tensors of the memory arena's last run are still open");
            }
            replaying = true;
            return new Replay(this);
        }

        private synchronized void replayDone() {
            replaying = false;
        }

        /** Frees the arena's memory (at once, or when the last tensor still on it is closed). Idempotent. */
        @Override
        public synchronized void close() {
            if (!closed) {
                closed = true;
                backing.release();
            }
        }
    }

    /** An open replay of an arena on one thread ({@link Arena#replay()}). */
    public static final class Replay implements AutoCloseable {
        private final Arena arena;
        private final MemoryPattern pattern;
        private final Storage.Interceptor previous;
        private int next;
        private boolean diverged;
        private boolean open = true;

        private Replay(Arena arena) {
            this.arena = arena;
            this.pattern = arena.pattern;
            this.previous = Storage.intercept(this::allocate);
        }

        private Storage allocate(Device d, long bytes) {
            if (!d.equals(pattern.device) || diverged) {
                return previous == null ? null : previous.allocate(d, bytes);
            }
            int i = next++;
            if (i >= pattern.sizes.length || pattern.sizes[i] != bytes || !free(pattern.reuses[i])) {
                diverged = true;
                return previous == null ? null : previous.allocate(d, bytes);
            }
            arena.backing.retain();
            arena.alive.set(i, 1);
            return Storage.external(d, arena.backing.address + pattern.offsets[i], bytes, s -> {
                arena.alive.set(i, 0);
                arena.backing.release();
            });
        }

        private boolean free(int[] earlier) {
            for (int j : earlier) {
                if (arena.alive.get(j) != 0) {
                    return false;
                }
            }
            return true;
        }

        /**
         * Whether the run strayed from the pattern (another size, more allocations, or memory
         * still in use where the plan reuses it): the allocations from there on came from the
         * allocator. Fewer allocations than recorded is also a divergence, reported at close.
         */
        public boolean diverged() {
            return diverged;
        }

        /** Ends the replay: the thread allocates from the allocator again. */
        @Override
        public void close() {
            if (open) {
                open = false;
                if (next != pattern.sizes.length) {
                    diverged = true;
                }
                Storage.intercept(previous);
                arena.replayDone();
            }
        }
    }
}
