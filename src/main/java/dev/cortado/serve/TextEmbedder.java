package dev.cortado.serve;

import java.util.List;

/**
 * A model that turns texts into fixed-size vectors (sentence embeddings): what the embedding
 * server and its dynamic batcher serve.
 *
 * <p>{@link #embed} takes a whole batch at once; the batcher groups concurrent requests into one
 * call. Implementations are safe to call from several threads at the same time.
 */
public interface TextEmbedder extends AutoCloseable {

    /** The model's name as clients see it (the {@code model} field of the embeddings API). */
    String modelName();

    /** The length of every vector {@link #embed} returns. */
    int dimension();

    /** How many tokens the model reads at most from one text. */
    int maxTokens();

    /** How many tokens {@code text} is, as {@link #embed} counts them (for the usage report). */
    int tokenCount(String text);

    /**
     * One vector per text, in order, each of length {@link #dimension()}.
     *
     * @throws IllegalArgumentException for a text the model cannot take (a server answers 400)
     * @throws IllegalStateException after {@link #close()}
     */
    float[][] embed(List<String> texts);

    /** Frees the model; calls after it fail with {@link IllegalStateException}. */
    @Override
    void close();
}
