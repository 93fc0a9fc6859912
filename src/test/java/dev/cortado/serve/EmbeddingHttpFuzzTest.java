package dev.cortado.serve;

import com.code_intelligence.jazzer.api.BugDetectors;
import com.code_intelligence.jazzer.junit.FuzzTest;
import dev.cortado.testing.Fuzzing;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Fuzzes the embedding server over HTTP: the input's bytes are sent as they are, as one or more
 * requests on a TCP connection to a running {@link EmbeddingServer} (an {@link NgramEmbedder}
 * behind it), then the connection's output is shut down and every answer read. This reaches what
 * {@link EmbeddingRequestFuzzTest} (the JSON body alone) does not: the request line, the
 * headers, {@code Content-Length} (absent, repeated, negative, not a number, past the limit,
 * longer or shorter than the body), chunked bodies, the path and method dispatch, pipelined
 * requests, and the JDK's HTTP parser in front of them. The seed corpus
 * ({@code EmbeddingHttpFuzzTestInputs/request}) holds well-formed requests of each kind.
 *
 * <p>Outcomes: a 2xx answer is accepted; a 4xx or 5xx answer other than 500 (the server's 400,
 * 404, 405, 413 and 503, the JDK parser's 400, 501 and 505), or the connection closed or reset
 * without an answer (the JDK's parser refusing a malformed request), is a declared refusal
 * ({@link Refused}, with the status line as its message); an interim {@code 100 Continue} is
 * skipped. A finding is an answer of 500 (an exception the handler did not expect), a 1xx or 3xx
 * answer, an answer that is not HTTP, an error answer
 * whose body is not the OpenAI error JSON, or no answer within 10 s (a hung connection); every 256
 * inputs the server must still answer {@code GET /health} with 200.
 */
class EmbeddingHttpFuzzTest {
    static final List<Class<? extends Throwable>> DECLARED = List.of(Refused.class);
    private static final Pattern STATUS = Pattern.compile("HTTP/1\\.1 (\\d{3})[^\\r\\n]*");
    private static final Pattern CONTENT_LENGTH = Pattern.compile("(?i)\r\ncontent-length: *(\\d+)");
    private static final AtomicLong INPUTS = new AtomicLong();
    private static EmbeddingServer server;

    /** The server refused the request as it should: a 4xx or 503 answer, or no answer at all. */
    static final class Refused extends Exception {
        Refused(String message) {
            super(message);
        }
    }

    private static synchronized EmbeddingServer server() throws IOException {
        if (server == null) {
            NgramEmbedder model = new NgramEmbedder(8);
            EmbeddingServer s = EmbeddingServer.builder(model).host("127.0.0.1").port(0).maxInputs(8)
                    .maxBodyBytes(2048).maxTextChars(256).maxWait(Duration.ZERO).httpThreads(4).build().start();
            Runtime.getRuntime().addShutdownHook(new Thread(() -> {
                s.close();
                model.close();
            }));
            server = s;
        }
        return server;
    }

    /** Sends {@code request}, shuts the output down and reads until the server closes. */
    static String exchange(int port, byte[] request) throws IOException {
        // Jazzer's SSRF detector: this target connects to its own server, on that port only
        try (var allowed = BugDetectors.allowNetworkConnections((host, p) -> p == port);
             Socket socket = new Socket()) {
            socket.connect(new InetSocketAddress("127.0.0.1", port), 10_000);
            socket.setSoTimeout(10_000);
            OutputStream out = socket.getOutputStream();
            out.write(request);
            out.flush();
            socket.shutdownOutput();
            InputStream in = socket.getInputStream();
            return new String(in.readAllBytes(), StandardCharsets.ISO_8859_1);
        }
    }

    @FuzzTest(maxDuration = "20s")
    void request(byte[] raw) {
        Fuzzing.check("http-server", DECLARED, raw, () -> {
            int port = server().port();
            if (INPUTS.incrementAndGet() % 256 == 0) {
                String health = exchange(port, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
                        .getBytes(StandardCharsets.US_ASCII));
                if (!health.startsWith("HTTP/1.1 200")) {
                    throw new AssertionError("the server no longer answers GET /health: " + firstLine(health));
                }
            }
            String answer;
            try {
                answer = exchange(port, raw);
            } catch (SocketTimeoutException e) {
                throw new AssertionError("no answer within 10 s (a hung connection)", e);
            } catch (IOException e) {
                throw new Refused("the connection failed without an answer: " + e);
            }
            if (answer.isEmpty()) {
                throw new Refused("the server closed the connection without an answer");
            }
            // the answers in order (pipelined requests get one each): status line, headers, a body
            // of the Content-length the server always sends
            int first = 0;
            for (int at = 0; at < answer.length(); ) {
                Matcher m = STATUS.matcher(answer).region(at, answer.length());
                int headersEnd = answer.indexOf("\r\n\r\n", at);
                if (!m.lookingAt() || headersEnd < 0) {
                    throw new AssertionError("not an HTTP answer at byte " + at + ": " + firstLine(answer.substring(at)));
                }
                int status = Integer.parseInt(m.group(1));
                if (status == 100) {
                    at = headersEnd + 4; // "100 Continue" (the request said Expect: 100-continue), then the answer
                    continue;
                }
                if (status == 500 || status < 200 || status > 599 || (status >= 300 && status < 400)) {
                    throw new AssertionError("answered " + m.group() + ": " + answer.substring(at,
                            Math.min(answer.length(), at + 800)));
                }
                Matcher length = CONTENT_LENGTH.matcher(answer.substring(at, headersEnd));
                int bodyStart = headersEnd + 4;
                int bodyEnd = length.find() ? bodyStart + Integer.parseInt(length.group(1)) : bodyStart;
                if (bodyEnd > answer.length()) {
                    throw new AssertionError("an answer shorter than its Content-length: " + answer.substring(at));
                }
                String body = answer.substring(bodyStart, bodyEnd);
                if (status >= 400 && !body.startsWith("{\"error\":{\"message\":")
                        && answer.substring(at, headersEnd).contains("application/json")) {
                    throw new AssertionError("an error answer without the error JSON: " + body);
                }
                if (first == 0) {
                    first = status;
                }
                at = bodyEnd;
            }
            if (first >= 400) {
                throw new Refused(firstLine(answer));
            }
        });
    }

    private static String firstLine(String s) {
        int end = s.indexOf('\r');
        return end < 0 ? s.substring(0, Math.min(s.length(), 200)) : s.substring(0, end);
    }
}
