package dev.cortado.distributed;

/** How an all-reduce or reduce-scatter combines the processes' values (codes of comm.h). */
public enum ReduceOp {
    SUM(0),
    /** The sum divided by the world size; float dtypes only. */
    AVG(1),
    MAX(2),
    MIN(3);

    final int code;

    ReduceOp(int code) {
        this.code = code;
    }
}
