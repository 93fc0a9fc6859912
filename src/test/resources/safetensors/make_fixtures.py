"""Writes the .safetensors fixtures of SafetensorsTest.readsFilesWrittenByTheReferenceLibrary.

The files are written by the reference implementation (the `safetensors` Python package, numpy
API) so the Java reader is checked against another writer's bytes, not only its own. The tests
need no Python: the files are committed; rerun this only to change them:

    python3 make_fixtures.py        # in this folder; safetensors 0.8.0, numpy 2.4.6 were used

Contents follow one formula that SafetensorsTest recomputes: element i (row-major) of a tensor
is v(i) = ((7 * i) % 23) - 11, times 0.25 for floating dtypes (exact in float16), i % 23 for
uint8 and v(i) % 3 == 0 for bool.
"""
import numpy as np
from safetensors.numpy import save_file


def values(dtype, shape):
    n = int(np.prod(shape)) if len(shape) else 1
    i = np.arange(n, dtype=np.int64)
    v = (7 * i) % 23 - 11
    if dtype == np.uint8:
        v = i % 23
    if dtype == np.bool_:
        return (v % 3 == 0).reshape(shape)
    if np.issubdtype(dtype, np.floating):
        return (v * 0.25).astype(dtype).reshape(shape)
    return v.astype(dtype).reshape(shape)


tensors = {
    "f32.matrix": values(np.float32, (3, 5)),
    "f64.cube": values(np.float64, (2, 3, 4)),
    "f16.vector": values(np.float16, (7,)),
    "i8.odd": values(np.int8, (5, 1, 3)),
    "u8.bytes": values(np.uint8, (13,)),
    "i32.row": values(np.int32, (1, 9)),
    "i64.long": values(np.int64, (4, 2)),
    "bool.mask": values(np.bool_, (2, 5)),
    "f32.scalar": values(np.float32, ()),
    "f32.empty": np.zeros((0, 3), dtype=np.float32),
}
save_file(tensors, "reference-numpy.safetensors", metadata={"producer": "safetensors.numpy", "step": "7"})
# a 240 kB float tensor and a one-byte tensor: the reference writer orders the data by dtype size, so
# the file ends at an odd offset (checked: reading the last byte exactly)
save_file({"big": values(np.float32, (200, 300)), "a.tiny": values(np.uint8, (1,))}, "reference-odd-offset.safetensors")
