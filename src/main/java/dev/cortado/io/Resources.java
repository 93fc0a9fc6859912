package dev.cortado.io;

import java.io.BufferedInputStream;
import java.io.FileNotFoundException;
import java.io.IOException;
import java.io.InputStream;
import java.util.zip.GZIPInputStream;

/** Classpath resources and gzip detection, shared by the readers. */
final class Resources {
    /** Where the data shipped with Cortado lives on the classpath. */
    static final String DATA = "/dev/cortado/data/";

    private Resources() {
    }

    /** Opens an absolute classpath resource (works from a jar); throws naming it if missing. */
    static InputStream open(String resource) throws IOException {
        InputStream in = Resources.class.getResourceAsStream(resource);
        if (in == null) {
            throw new FileNotFoundException("classpath resource " + resource + " not found (is the cortado jar, with its "
                    + "data folder dev/cortado/data/, on the classpath?)");
        }
        return new BufferedInputStream(in, 1 << 16);
    }

    /** {@code in} itself, or a gunzipping stream over it when it starts with the gzip magic 1f 8b. */
    static InputStream maybeGunzip(InputStream in) throws IOException {
        InputStream b = in.markSupported() ? in : new BufferedInputStream(in, 1 << 16);
        b.mark(2);
        int b0 = b.read();
        int b1 = b.read();
        b.reset();
        if (b0 == 0x1f && b1 == 0x8b) {
            return new BufferedInputStream(new GZIPInputStream(b, 1 << 16), 1 << 16);
        }
        return b;
    }
}
