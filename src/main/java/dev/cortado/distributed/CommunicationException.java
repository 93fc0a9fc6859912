package dev.cortado.distributed;

/**
 * A collective failed: the MPI (or NCCL) call reported an error, a peer did not answer within the
 * group's timeout, or the group was closed while the operation was pending. The message names the
 * operation, the tensor and the rank.
 */
public class CommunicationException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public CommunicationException(String message) {
        super(message);
    }

    public CommunicationException(String message, Throwable cause) {
        super(message, cause);
    }
}
