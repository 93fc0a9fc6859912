import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;
import java.util.stream.Stream;

/**
 * The one source of the native boundary's Java side: reads the C headers
 * ({@code native/include/cortado/*.h}) and the op lists ({@code native/include/cortado/ops/*.def})
 * and writes
 * <ul>
 *   <li>{@code --java DIR}: the JavaCPP binding classes {@code NativeCpu} and {@code NativeCuda}
 *   (every {@code ct_cpu_*} / {@code ct_cuda_*} function), one interface per kernel family
 *   ({@code dev.cortado.backend.kernels.<Family>Kernels}: the functions both backends have, with the same
 *   signature, stream last), {@code Kernels} (all families), its two implementations
 *   {@code CpuKernels} and {@code CudaKernels}, the constants ({@code NativeCodes}: every
 *   {@code #define CT_*} integer and one nested class per op list) and the descriptor layouts
 *   ({@code NativeStructs}: field offsets of every {@code typedef struct});</li>
 *   <li>{@code --stub FILE}: the C++ source of libcortado_cuda.so for builds without nvcc, every
 *   {@code ct_cuda_*} function answering CT_ERR_NOT_BUILT.</li>
 * </ul>
 * Run by Maven (generate-sources) and by CMake; plain JDK, no dependencies:
 * {@code java native/tools/GenerateBindings.java native/include --java target/generated-sources/cortado}.
 */
public final class GenerateBindings {

    /** Headers of the backends' runtimes: bound, but not kernel families. */
    private static final List<String> RUNTIME_HEADERS = List.of("common", "cpu", "cuda");
    private static final Map<String, String> FAMILY_NAMES = Map.of("kvcache", "KvCache");

    record Param(String type, String name) {
        boolean pointer() {
            return type.contains("*");
        }
    }

    record Function(String header, String ret, String name, List<Param> params) {
        String backend() {
            return name.startsWith("ct_cpu_") ? "cpu" : "cuda";
        }

        String suffix() {
            return name.substring(backend().equals("cpu") ? 7 : 8);
        }

        List<String> types() {
            return params.stream().map(Param::type).collect(Collectors.toList());
        }
    }

    record Field(String type, String name, int count) {
    }

    record Struct(String name, List<Field> fields) {
    }

    record Entry(String ident, String name) {
    }

    private final Map<String, Long> defines = new LinkedHashMap<>();
    private final Map<String, List<String>> definesByHeader = new LinkedHashMap<>();
    private final List<Function> functions = new ArrayList<>();
    private final List<Struct> structs = new ArrayList<>();
    private final Map<String, List<Entry>> lists = new TreeMap<>();
    /** The C enum prefix of each list (CT_BINARY_ for binary.def), from the header that expands it. */
    private final Map<String, String> listPrefixes = new TreeMap<>();
    private final List<String> headers = new ArrayList<>();

    public static void main(String[] args) throws IOException {
        if (args.length != 3 || !(args[1].equals("--java") || args[1].equals("--stub"))) {
            System.err.println("usage: java GenerateBindings.java <include dir> (--java <dir> | --stub <file>)");
            System.exit(2);
        }
        GenerateBindings g = new GenerateBindings();
        g.read(Path.of(args[0]));
        if (args[1].equals("--java")) {
            g.writeJava(Path.of(args[2]));
        } else {
            write(Path.of(args[2]), g.stub());
        }
    }

    // ------------------------------------------------------------------ parsing
    private static final Pattern DEFINE = Pattern.compile("^\\s*#define\\s+CT_(\\w+)\\s+(-?\\d+)\\b", Pattern.MULTILINE);
    private static final Pattern STRUCT = Pattern.compile("typedef\\s+struct\\s+(\\w+)\\s*\\{([^}]*)\\}\\s*\\w+\\s*;");
    private static final Pattern FIELD = Pattern.compile("^(.*?)(\\w+)\\s*(?:\\[\\s*(\\w+)\\s*\\])?$");
    private static final Pattern FUNCTION = Pattern.compile(
            "(const\\s+char\\s*\\*|int64_t|int|void)\\s*(ct_(?:cpu|cuda)_\\w+)\\s*\\(([^)]*)\\)\\s*;");
    private static final Pattern LIST_ENTRY = Pattern.compile("^\\s*\\w+\\(\\s*(\\w+)\\s*,\\s*\"(\\w+)\"([^)]*)\\)", Pattern.MULTILINE);
    /** A header's enum of a list: {@code #define CT_X(ident, ...) CT_PREFIX_##ident,} then {@code #include "ops/<list>.def"}. */
    private static final Pattern LIST_ENUM = Pattern.compile(
            "#define\\s+\\w+\\(ident[^)]*\\)\\s+(CT_\\w+?)##ident\\s*,\\s*#include\\s+\"ops/(\\w+)\\.def\"");
    /** binary.def's expansion of unary.def: one ACTIVATION_GRAD op per unary line whose last column is GRAD. */
    private static final Pattern EXPANDS_UNARY = Pattern.compile("^\\s*#include\\s+\"unary\\.def\"", Pattern.MULTILINE);

    private static String stripComments(String s) {
        return s.replaceAll("(?s)/\\*.*?\\*/", " ").replaceAll("//[^\\n]*", "");
    }

    private void read(Path include) throws IOException {
        Path dir = include.resolve("cortado");
        List<Path> files;
        try (Stream<Path> s = Files.list(dir)) {
            files = s.filter(p -> p.toString().endsWith(".h")).sorted().collect(Collectors.toList());
        }
        for (Path f : files) {
            String header = f.getFileName().toString().replace(".h", "");
            headers.add(header);
            String text = stripComments(Files.readString(f));
            Matcher x = LIST_ENUM.matcher(text);
            while (x.find()) {
                listPrefixes.put(x.group(2), x.group(1));
            }
            Matcher d = DEFINE.matcher(text);
            while (d.find()) {
                defines.put(d.group(1), Long.parseLong(d.group(2)));
                definesByHeader.computeIfAbsent(header, k -> new ArrayList<>()).add(d.group(1));
            }
            Matcher st = STRUCT.matcher(text);
            while (st.find()) {
                structs.add(new Struct(st.group(1), fields(st.group(2))));
            }
            Matcher m = FUNCTION.matcher(text.replaceAll("\\s+", " "));
            while (m.find()) {
                functions.add(new Function(header, m.group(1).replaceAll("\\s+", ""), m.group(2), params(m.group(3))));
            }
        }
        Path ops = dir.resolve("ops");
        if (Files.isDirectory(ops)) {
            try (Stream<Path> s = Files.list(ops)) {
                Map<String, String> texts = new TreeMap<>();
                for (Path f : s.filter(p -> p.toString().endsWith(".def")).collect(Collectors.toList())) {
                    texts.put(f.getFileName().toString().replace(".def", ""), stripComments(Files.readString(f)));
                }
                for (Map.Entry<String, String> def : texts.entrySet()) {
                    List<Entry> entries = new ArrayList<>();
                    Matcher e = LIST_ENTRY.matcher(def.getValue());
                    while (e.find()) {
                        entries.add(new Entry(e.group(1), e.group(2)));
                    }
                    if (EXPANDS_UNARY.matcher(def.getValue()).find()) {
                        // as the macros at the end of binary.def: <IDENT>_GRAD, "<name>_grad" per GRAD line
                        Matcher u = LIST_ENTRY.matcher(texts.getOrDefault("unary", ""));
                        while (u.find()) {
                            String[] columns = u.group(3).split(",");
                            if (columns[columns.length - 1].trim().equals("GRAD")) {
                                entries.add(new Entry(u.group(1) + "_GRAD", u.group(2) + "_grad"));
                            }
                        }
                    }
                    lists.put(def.getKey(), entries);
                }
            }
        }
        checkPairs();
    }

    private List<Field> fields(String body) {
        List<Field> out = new ArrayList<>();
        for (String decl : body.split(";")) {
            decl = decl.trim().replaceAll("\\s+", " ");
            if (decl.isEmpty()) {
                continue;
            }
            Matcher m = FIELD.matcher(decl);
            if (!m.matches()) {
                throw new IllegalStateException("cannot parse struct field '" + decl + "'");
            }
            int count = 1;
            if (m.group(3) != null) {
                String n = m.group(3);
                count = n.matches("\\d+") ? Integer.parseInt(n) : Math.toIntExact(defines.get(n.replaceFirst("^CT_", "")));
            }
            out.add(new Field(m.group(1).trim(), m.group(2), count));
        }
        return out;
    }

    private static List<Param> params(String list) {
        List<Param> out = new ArrayList<>();
        String l = list.trim();
        if (l.isEmpty() || l.equals("void")) {
            return out;
        }
        for (String p : l.split(",")) {
            p = p.trim();
            Matcher m = Pattern.compile("^(.*?)(\\w+)$").matcher(p);
            if (!m.matches() || m.group(1).isBlank()) {
                throw new IllegalStateException("cannot parse parameter '" + p + "' (every parameter needs a name)");
            }
            out.add(new Param(m.group(1).trim().replaceAll("\\s*\\*", "*"), m.group(2)));
        }
        return out;
    }

    /**
     * Every kernel (a family function returning a status) takes the stream last, and one present on
     * both backends has the same parameters there.
     */
    private void checkPairs() {
        for (Function f : functions) {
            if (RUNTIME_HEADERS.contains(f.header()) || !f.ret().equals("int")) {
                continue;
            }
            if (f.params().isEmpty() || !f.params().get(f.params().size() - 1).name().equals("stream")) {
                throw new IllegalStateException(f.header() + ".h: " + f.name() + " must take 'int64_t stream' last");
            }
            Function twin = twin(f);
            if (twin != null && !twin.types().equals(f.types())) {
                throw new IllegalStateException(f.header() + ".h: " + f.name() + " and " + twin.name()
                        + " differ in their parameters: " + f.types() + " vs " + twin.types());
            }
        }
    }

    private Function twin(Function f) {
        String other = (f.backend().equals("cpu") ? "ct_cuda_" : "ct_cpu_") + f.suffix();
        return functions.stream().filter(g -> g.name().equals(other)).findFirst().orElse(null);
    }

    // ------------------------------------------------------------------ Java
    private static final String HEADER = "// Generated by native/tools/GenerateBindings.java from native/include/cortado/. Do not edit.\n";

    private void writeJava(Path out) throws IOException {
        write(out.resolve("dev/cortado/backend/cpu/NativeCpu.java"), binding("cpu"));
        write(out.resolve("dev/cortado/backend/cuda/NativeCuda.java"), binding("cuda"));
        write(out.resolve("dev/cortado/backend/kernels/NativeCodes.java"), codes());
        write(out.resolve("dev/cortado/backend/kernels/NativeStructs.java"), structsClass());
        List<String> families = families();
        for (String family : families) {
            write(out.resolve("dev/cortado/backend/kernels/" + familyName(family) + "Kernels.java"), familyInterface(family));
        }
        write(out.resolve("dev/cortado/backend/kernels/Kernels.java"), kernelsInterface(families));
        write(out.resolve("dev/cortado/backend/cpu/CpuKernels.java"), implementation("cpu", families));
        write(out.resolve("dev/cortado/backend/cuda/CudaKernels.java"), implementation("cuda", families));
        // a file generated by an earlier version (a renamed family, a moved package) must not linger
        try (Stream<Path> old = Files.walk(out)) {
            for (Path f : old.filter(f -> f.toString().endsWith(".java") && !written.contains(f.toAbsolutePath()))
                    .collect(Collectors.toList())) {
                Files.delete(f);
            }
        }
    }

    private List<String> families() {
        List<String> out = new ArrayList<>();
        for (String h : headers) {
            if (!RUNTIME_HEADERS.contains(h) && functions.stream().anyMatch(f -> f.header().equals(h) && twin(f) != null)) {
                out.add(h);
            }
        }
        return out;
    }

    private static String familyName(String header) {
        return FAMILY_NAMES.getOrDefault(header, Character.toUpperCase(header.charAt(0)) + header.substring(1));
    }

    private static String camel(String snake) {
        StringBuilder b = new StringBuilder();
        boolean up = false;
        for (char c : snake.toCharArray()) {
            if (c == '_') {
                up = b.length() > 0;
            } else {
                b.append(up ? Character.toUpperCase(c) : c);
                up = false;
            }
        }
        String s = b.toString();
        return switch (s) {
            case "in", "out", "int", "long", "double", "float", "char", "default", "new" -> s.equals("in") || s.equals("out") ? s : s + "_";
            default -> s;
        };
    }

    private static String pascal(String snake) {
        String c = camel(snake);
        return Character.toUpperCase(c.charAt(0)) + c.substring(1);
    }

    /** The Java type of a parameter in the binding: arrays for the runtime's out-parameters. */
    private static String javaParam(Param p, boolean arrays) {
        String t = p.type();
        if (p.pointer()) {
            if (arrays) {
                String base = t.replace("const", "").replace("*", "").trim();
                String arr = switch (base) {
                    case "int", "int32_t" -> "int[]";
                    case "int64_t", "uint64_t" -> "@Cast(\"" + t + "\") long[]";
                    case "float" -> "float[]";
                    case "double" -> "double[]";
                    case "char" -> "@Cast(\"" + t + "\") byte[]";
                    default -> null;
                };
                if (arr != null) {
                    return arr;
                }
            }
            return "@Cast(\"" + t + "\") long";
        }
        return switch (t) {
            case "int", "int32_t" -> "int";
            case "int64_t", "uint64_t" -> "@Cast(\"" + t + "\") long";
            case "double" -> "double";
            case "float" -> "float";
            default -> throw new IllegalStateException("no Java mapping for parameter type '" + t + "'");
        };
    }

    /** The plain Java type of a parameter in the family interfaces (pointers are addresses). */
    private static String plainType(Param p) {
        String j = javaParam(p, false);
        return j.startsWith("@Cast") ? "long" : j;
    }

    private static String javaReturn(String ret) {
        return switch (ret) {
            case "int" -> "int";
            case "int64_t" -> "@Cast(\"int64_t\") long";
            case "constchar*" -> "@Cast(\"const char*\") BytePointer";
            case "void" -> "void";
            default -> throw new IllegalStateException("no Java mapping for return type " + ret);
        };
    }

    private String binding(String backend) {
        String cls = backend.equals("cpu") ? "NativeCpu" : "NativeCuda";
        String lib = "cortado_" + backend;
        StringBuilder b = new StringBuilder(HEADER);
        b.append("package dev.cortado.backend.").append(backend).append(";\n\n");
        b.append("import org.bytedeco.javacpp.BytePointer;\nimport org.bytedeco.javacpp.Loader;\n");
        b.append("import org.bytedeco.javacpp.annotation.Cast;\nimport org.bytedeco.javacpp.annotation.Name;\n");
        b.append("import org.bytedeco.javacpp.annotation.Platform;\nimport org.bytedeco.javacpp.annotation.Properties;\n\n");
        b.append("/**\n * JavaCPP binding of lib").append(lib).append(".so: every {@code ct_").append(backend)
                .append("_*} function of the headers in\n * {@code native/include/cortado/}. Pointers cross as raw addresses ({@code long}); in the\n")
                .append(" * runtime header the scalar out-parameters are arrays, with an address variant named {@code *_at}.\n */\n");
        String includes = headers.stream().map(h -> "\"cortado/" + h + ".h\"").collect(Collectors.joining(", "));
        if (backend.equals("cpu")) {
            b.append("@Properties(value = @Platform(compiler = \"cpp17\", include = {").append(includes)
                    .append("}, link = \"cortado_cpu\", preload = {\"cortado_env\", \"gomp@.1\"}))\n");
        } else {
            b.append("@Properties(value = @Platform(compiler = \"cpp17\", include = {").append(includes)
                    .append("}, link = \"cortado_cuda\"))\n");
        }
        b.append("public final class ").append(cls).append(" {\n    static {\n");
        if (backend.equals("cpu")) {
            b.append("        // libcortado_cpu.so needs libopenblas.so.0: load it from the OpenBLAS preset jar first.\n");
            b.append("        Loader.load(org.bytedeco.openblas.global.openblas_nolapack.class);\n");
        }
        b.append("        Loader.load();\n    }\n\n    private ").append(cls).append("() {\n    }\n\n");
        b.append("    /** Loads the library (class initialisation); a failure surfaces as a LinkageError. */\n");
        b.append("    public static void ensureLoaded() {\n    }\n");
        String current = null;
        for (Function f : functions) {
            if (!f.backend().equals(backend)) {
                continue;
            }
            if (!f.header().equals(current)) {
                current = f.header();
                b.append("\n    // ---------------------------------------------------------------- ").append(current).append(".h\n");
            }
            boolean runtime = RUNTIME_HEADERS.contains(f.header());
            b.append(nativeMethod(f, f.name(), runtime, null));
            if (runtime && f.params().stream().anyMatch(Param::pointer)) {
                b.append(nativeMethod(f, f.name() + "_at", false, f.name()));
            }
        }
        b.append("}\n");
        return b.toString();
    }

    private static String nativeMethod(Function f, String javaName, boolean arrays, String cName) {
        StringBuilder b = new StringBuilder();
        if (cName != null) {
            b.append("    @Name(\"").append(cName).append("\")\n");
        }
        b.append("    public static native ").append(javaReturn(f.ret())).append(' ').append(javaName).append('(');
        b.append(f.params().stream().map(p -> javaParam(p, arrays) + " " + camel(p.name())).collect(Collectors.joining(", ")));
        b.append(");\n");
        return b.toString();
    }

    private String familyInterface(String family) {
        StringBuilder b = new StringBuilder(HEADER);
        b.append("package dev.cortado.backend.kernels;\n\n/**\n * The kernels of {@code native/include/cortado/").append(family)
                .append(".h} that both backends implement: one method per\n * {@code ct_cpu_*}/{@code ct_cuda_*} pair, the same parameters ")
                .append("(addresses as {@code long}, stream last; the\n * CPU ignores the stream), returning the native status (0 = OK). ")
                .append("The header documents each function.\n */\npublic interface ").append(familyName(family)).append("Kernels {\n");
        for (Function f : functions) {
            if (f.header().equals(family) && f.backend().equals("cpu") && twin(f) != null) {
                b.append("    ").append(signature(f)).append(";\n\n");
            }
        }
        trimBlank(b);
        b.append("}\n");
        return b.toString();
    }

    private static String signature(Function f) {
        return "int " + camel(f.suffix()) + "(" + f.params().stream().map(p -> plainType(p) + " " + camel(p.name()))
                .collect(Collectors.joining(", ")) + ")";
    }

    private String kernelsInterface(List<String> families) {
        StringBuilder b = new StringBuilder(HEADER);
        b.append("package dev.cortado.backend.kernels;\n\n/**\n * Every kernel family of one backend ({@link dev.cortado.backend.cpu.CpuKernels} or\n")
                .append(" * {@link dev.cortado.backend.cuda.CudaKernels}), and the message of its last failed call.\n */\n")
                .append("public interface Kernels extends ")
                .append(families.stream().map(f -> familyName(f) + "Kernels").collect(Collectors.joining(", ")))
                .append(" {\n    /** The backend library's message for the last failed call on this thread. */\n")
                .append("    String lastError();\n}\n");
        return b.toString();
    }

    private String implementation(String backend, List<String> families) {
        String cls = backend.equals("cpu") ? "CpuKernels" : "CudaKernels";
        String nat = backend.equals("cpu") ? "NativeCpu" : "NativeCuda";
        StringBuilder b = new StringBuilder(HEADER);
        b.append("package dev.cortado.backend.").append(backend).append(";\n\nimport dev.cortado.backend.kernels.Kernels;\n\n");
        b.append("/** The ").append(backend.toUpperCase()).append(" implementation of every kernel family: calls into lib cortado_")
                .append(backend).append(" through {@link ").append(nat).append("}. */\n");
        b.append("public final class ").append(cls).append(" implements Kernels {\n");
        b.append("    /** The one instance (stateless). */\n    public static final ").append(cls).append(" INSTANCE = new ")
                .append(cls).append("();\n\n    private ").append(cls).append("() {\n    }\n\n");
        b.append("    @Override\n    public String lastError() {\n        return ").append(nat).append(".ct_").append(backend)
                .append("_last_error().getString();\n    }\n");
        for (String family : families) {
            for (Function f : functions) {
                if (f.header().equals(family) && f.backend().equals("cpu") && twin(f) != null) {
                    Function target = backend.equals("cpu") ? f : twin(f);
                    b.append("\n    @Override\n    public ").append(signature(f)).append(" {\n        return ").append(nat).append('.')
                            .append(target.name()).append('(')
                            .append(f.params().stream().map(p -> camel(p.name())).collect(Collectors.joining(", ")))
                            .append(");\n    }\n");
                }
            }
        }
        b.append("}\n");
        return b.toString();
    }

    private String codes() {
        StringBuilder b = new StringBuilder(HEADER);
        b.append("package dev.cortado.backend.kernels;\n\n/**\n * The native interface's constants: every integer {@code #define CT_*} of the headers (without\n")
                .append(" * the prefix) and, per op list {@code native/include/cortado/ops/<list>.def}, a nested class with\n")
                .append(" * one code per line (its position), {@code COUNT} and the ops' names.\n */\npublic final class NativeCodes {\n")
                .append("    private NativeCodes() {\n    }\n");
        for (Map.Entry<String, List<String>> e : definesByHeader.entrySet()) {
            b.append("\n    // ").append(e.getKey()).append(".h\n");
            for (String name : e.getValue()) {
                b.append("    public static final int ").append(name).append(" = ").append(defines.get(name)).append(";\n");
            }
        }
        for (Map.Entry<String, List<Entry>> e : lists.entrySet()) {
            String cls = pascal(e.getKey());
            List<Entry> entries = e.getValue();
            b.append("\n    /** Codes of {@code ops/").append(e.getKey()).append(".def}. */\n    public static final class ").append(cls)
                    .append(" {\n");
            for (int i = 0; i < entries.size(); i++) {
                b.append("        public static final int ").append(entries.get(i).ident()).append(" = ").append(i).append(";\n");
            }
            b.append("        public static final int COUNT = ").append(entries.size()).append(";\n");
            b.append("        private static final String[] NAMES = {")
                    .append(entries.stream().map(x -> "\"" + x.name() + "\"").collect(Collectors.joining(", "))).append("};\n\n");
            b.append("        private ").append(cls).append("() {\n        }\n\n");
            b.append("        /** The op name of {@code code} (as in the .def list). */\n        public static String name(int code) {\n")
                    .append("            return NAMES[code];\n        }\n    }\n");
        }
        b.append("}\n");
        return b.toString();
    }

    private static int size(String type) {
        if (type.contains("*")) {
            return 8;
        }
        return switch (type.replace("const", "").trim()) {
            case "int", "int32_t", "uint32_t", "float" -> 4;
            case "int64_t", "uint64_t", "double" -> 8;
            case "uint8_t", "int8_t" -> 1;
            default -> throw new IllegalStateException("struct field type '" + type + "' has no known size");
        };
    }

    /** Field offsets in declaration order, then the size: the C layout of x86-64 (natural alignment). */
    private static int[] layout(Struct s) {
        int[] out = new int[s.fields().size() + 1];
        int offset = 0;
        int maxAlign = 1;
        for (int i = 0; i < s.fields().size(); i++) {
            Field f = s.fields().get(i);
            int sz = size(f.type());
            maxAlign = Math.max(maxAlign, sz);
            offset = (offset + sz - 1) / sz * sz;
            out[i] = offset;
            offset += sz * f.count();
        }
        out[s.fields().size()] = (offset + maxAlign - 1) / maxAlign * maxAlign;
        return out;
    }

    private String structsClass() {
        StringBuilder b = new StringBuilder(HEADER);
        b.append("package dev.cortado.backend.kernels;\n\n/** Byte offsets and sizes of the descriptor structs of the native interface (C layout, x86-64). */\n")
                .append("public final class NativeStructs {\n    private NativeStructs() {\n    }\n");
        for (Struct s : structs) {
            b.append("\n    /** {@code ").append(s.name()).append("}. */\n    public static final class ").append(pascal(s.name()))
                    .append(" {\n");
            int[] at = layout(s);
            for (int i = 0; i < s.fields().size(); i++) {
                b.append("        public static final int ").append(s.fields().get(i).name().toUpperCase()).append(" = ").append(at[i])
                        .append(";\n");
            }
            b.append("        public static final int SIZE = ").append(at[s.fields().size()]).append(";\n\n        private ")
                    .append(pascal(s.name()))
                    .append("() {\n        }\n    }\n");
        }
        b.append("}\n");
        return b.toString();
    }

    // ------------------------------------------------------------------ the no-CUDA stub
    private String stub() {
        StringBuilder b = new StringBuilder("// Generated by native/tools/GenerateBindings.java from native/include/cortado/. Do not edit.\n");
        b.append("// libcortado_cuda.so for builds without nvcc: the same C interface as the real library (CMake\n")
                .append("// compares the exported symbols when nvcc exists), every call answering CT_ERR_NOT_BUILT.\n");
        for (String h : headers) {
            b.append("#include \"cortado/").append(h).append(".h\"\n");
        }
        b.append("#include <stddef.h>\n\n// The layouts Java writes (dev.cortado.backend.NativeStructs), checked by the compiler.\n");
        for (Struct st : structs) {
            int[] at = layout(st);
            for (int i = 0; i < st.fields().size(); i++) {
                b.append("static_assert(offsetof(").append(st.name()).append(", ").append(st.fields().get(i).name()).append(") == ")
                        .append(at[i]).append(", \"").append(st.name()).append('.').append(st.fields().get(i).name())
                        .append(": the generator's offset is wrong\");\n");
            }
            b.append("static_assert(sizeof(").append(st.name()).append(") == ").append(at[st.fields().size()]).append(", \"")
                    .append(st.name()).append(": the generator's size is wrong\");\n");
        }
        b.append("\n// The op codes Java has (NativeCodes, from the .def lists) are the C enums' values.\n");
        for (Map.Entry<String, List<Entry>> list : lists.entrySet()) {
            String prefix = listPrefixes.get(list.getKey());
            if (prefix == null) {
                continue;
            }
            for (int i = 0; i < list.getValue().size(); i++) {
                String ident = prefix + list.getValue().get(i).ident();
                b.append("static_assert(").append(ident).append(" == ").append(i).append(", \"ops/").append(list.getKey())
                        .append(".def: Java's code for ").append(ident).append(" is not C's\");\n");
            }
        }
        b.append("\nstatic const char kNotBuilt[] =\n    \"Cortado was built without CUDA (nvcc was not found when libcortado_cuda.so was built)\";\n\n");
        b.append("extern \"C\" {\n");
        for (Function f : functions) {
            if (!f.backend().equals("cuda")) {
                continue;
            }
            String ret = f.ret().equals("constchar*") ? "const char*" : f.ret();
            String body = switch (f.name()) {
                case "ct_cuda_last_error" -> "return kNotBuilt;";
                case "ct_cuda_built" -> "return 0;";
                default -> ret.equals("void") ? "" : "return CT_ERR_NOT_BUILT;";
            };
            b.append(ret).append(' ').append(f.name()).append('(')
                    .append(f.params().isEmpty() ? "void" : f.params().stream().map(p -> p.type() + " /*" + p.name() + "*/")
                            .collect(Collectors.joining(", ")))
                    .append(") { ").append(body).append(" }\n");
        }
        b.append("}\n");
        return b.toString();
    }

    private static void trimBlank(StringBuilder b) {
        while (b.length() > 1 && b.charAt(b.length() - 1) == '\n' && b.charAt(b.length() - 2) == '\n') {
            b.setLength(b.length() - 1);
        }
    }

    private static final java.util.Set<Path> written = new java.util.HashSet<>();

    private static void write(Path file, String content) throws IOException {
        written.add(file.toAbsolutePath());
        Files.createDirectories(file.getParent());
        if (Files.exists(file) && Files.readString(file).equals(content)) {
            return;  // unchanged: keep the timestamp so nothing downstream rebuilds
        }
        Files.writeString(file, content);
    }
}
