package dev.cortado.io;

import java.io.IOException;

/**
 * A safetensors file or checkpoint that does not follow its format (truncated, corrupt, or
 * written by something else); the message names the file and the problem. It is an
 * {@link IOException} because it is about the file's content, not the program: callers that
 * handle "could not read the checkpoint" handle this with the rest.
 */
public class CheckpointFormatException extends IOException {
    private static final long serialVersionUID = 1L;

    public CheckpointFormatException(String message) {
        super(message);
    }

    public CheckpointFormatException(String message, Throwable cause) {
        super(message, cause);
    }
}
