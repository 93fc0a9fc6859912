package dev.cortado.io;

import java.io.IOException;

/** A data file that does not follow its format; the message names the file and the problem. */
public class IdxFormatException extends IOException {
    private static final long serialVersionUID = 1L;

    public IdxFormatException(String message) {
        super(message);
    }
}
