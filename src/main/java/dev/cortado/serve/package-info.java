/**
 * Serving: text embedding models behind a dynamic batcher and an HTTP server that speaks the
 * OpenAI embeddings API ({@code POST /v1/embeddings}).
 */
package dev.cortado.serve;
