package dev.cortado.onnx;

/**
 * A model that uses an op, a domain or an opset the importer does not implement. Thrown when the
 * model loads (never while it runs), naming the op, its domain, the opset and the node.
 */
public final class UnsupportedOnnxOpException extends OnnxImportException {
    private static final long serialVersionUID = 1L;
    private final String opType;
    private final String domain;
    private final int opset;
    private final String nodeName;

    UnsupportedOnnxOpException(String opType, String domain, int opset, String nodeName, String message) {
        super(message);
        this.opType = opType;
        this.domain = domain;
        this.opset = opset;
        this.nodeName = nodeName;
    }

    /** The op type, or null when the whole opset is unsupported. */
    public String opType() {
        return opType;
    }

    /** The op's domain ("ai.onnx" for the default domain). */
    public String domain() {
        return domain;
    }

    /** The imported version of the op's domain, or -1 for a domain the importer does not know. */
    public int opset() {
        return opset;
    }

    /** The node's name, or null when it has none (or the opset itself is unsupported). */
    public String nodeName() {
        return nodeName;
    }
}
