/**
 * Cortado, a tensor engine for the JVM.
 *
 * <p>Exported: the settings entry point ({@code dev.cortado.Cortado}), tensors, ops, autograd,
 * modules, optimizers, data and checkpoints, graphs, and {@code dev.cortado.backend} for the exceptions a
 * caller catches ({@code DeviceOutOfMemoryException}, {@code BackendUnavailableException},
 * {@code CudaException}) and the {@code Backend} interface that {@code Device.backend()} returns.
 * Not exported: the generated native interface and backend internals
 * ({@code dev.cortado.backend.kernels}), the JavaCPP bindings ({@code dev.cortado.backend.cpu},
 * {@code dev.cortado.backend.cuda}) and the demos ({@code dev.cortado.cli}).
 *
 * <p>The native libraries are found by JavaCPP on the module path as on the class path: they are
 * resources under {@code dev/cortado/backend/<cpu|cuda>/linux-x86_64/}, a directory name that is
 * not a package, so no {@code opens} is needed. The CUDA natives come in their own artifact
 * (classifier {@code linux-x86_64-cuda}, automatic module {@code dev.cortado.cuda.linux.x86_64}):
 * on the module path, add it with {@code --add-modules dev.cortado.cuda.linux.x86_64}.
 */
module dev.cortado {
    requires org.bytedeco.javacpp;
    requires org.bytedeco.openblas;
    requires org.bytedeco.cuda;
    // the presets' natives for the one platform this jar's own natives are built for: required so
    // that they are resolved on the module path (on the class path they are simply there)
    requires org.bytedeco.javacpp.linux.x86_64;
    requires org.bytedeco.openblas.linux.x86_64;
    requires org.bytedeco.cuda.linux.x86_64;
    requires org.slf4j;
    requires com.fasterxml.jackson.core;
    // the ONNX importer (dev.cortado.onnx): the classes protoc generates from onnx.proto
    requires com.google.protobuf;
    // the serving layer (dev.cortado.onnx, dev.cortado.serve): latency histograms (HdrHistogram's
    // jar names no module: its file name does), the embedding server's HTTP endpoint, and the HTTP
    // client of its load generator
    requires HdrHistogram;
    requires jdk.httpserver;
    requires java.net.http;

    // the demos only (dev.cortado.cli); optional Maven dependencies
    requires static me.tongfei.progressbar;
    requires static org.jfree.jfreechart;
    requires static java.desktop;

    exports dev.cortado;
    exports dev.cortado.tensor;
    exports dev.cortado.ops;
    exports dev.cortado.autograd;
    exports dev.cortado.nn;
    exports dev.cortado.nn.functional;
    exports dev.cortado.optim;
    exports dev.cortado.io;
    exports dev.cortado.graph;
    exports dev.cortado.sparse;
    exports dev.cortado.quant;
    exports dev.cortado.distributed;
    exports dev.cortado.models;
    exports dev.cortado.backend;
    exports dev.cortado.onnx;
    exports dev.cortado.onnx.proto;
    exports dev.cortado.serve;
}
