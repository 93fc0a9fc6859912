package dev.cortado.onnx;

/**
 * An ONNX model that cannot be imported: a truncated or corrupt file, an initializer whose data
 * does not match its type, an external data file that is missing or outside the model's folder.
 */
public class OnnxImportException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public OnnxImportException(String message) {
        super(message);
    }

    public OnnxImportException(String message, Throwable cause) {
        super(message, cause);
    }
}
