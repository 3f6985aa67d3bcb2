"""Write checkpoints with TensorFlow in each way the official releases and users produce them,
and read them back with TensorFlow's own reader. Test-only: TensorFlow is imported here.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

tf1 = tf.compat.v1

TF_DTYPES = {
    "float16": tf.float16, "bfloat16": tf.bfloat16, "float32": tf.float32, "float64": tf.float64,
    "int8": tf.int8, "int16": tf.int16, "int32": tf.int32, "int64": tf.int64,
    "uint8": tf.uint8, "uint16": tf.uint16, "uint32": tf.uint32, "uint64": tf.uint64,
    "bool": tf.bool, "complex64": tf.complex64, "complex128": tf.complex128, "string": tf.string,
}


def to_tensor(value: np.ndarray, dtype_name: str):
    """The TF tensor of a test value; bfloat16 values are given as float32 and rounded by TF."""
    return tf.cast(tf.constant(value), TF_DTYPES[dtype_name]) if dtype_name == "bfloat16" \
        else tf.constant(value, dtype=TF_DTYPES[dtype_name])


def save_raw(variables: dict[str, tuple[str, np.ndarray]], prefix: str) -> str:
    """tf.raw_ops.SaveV2: any dtype, any name (what every saver ends up calling)."""
    names = sorted(variables)
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[to_tensor(variables[n][1], variables[n][0]) for n in names])
    return prefix


def save_saver(variables: dict[str, tuple[str, np.ndarray]], prefix: str, *, shards: int = 1,
               partitioned: dict[str, tuple[int, int]] | None = None,
               global_step: bool = True) -> str:
    """tf.compat.v1.train.Saver in a graph, as the official BERT/XLNet releases were written.

    shards > 1 places variables round-robin on that many CPU devices with a sharded Saver
    (one data file per device); partitioned maps a name to (number of parts, axis) for
    tf.compat.v1.fixed_size_partitioner."""
    partitioned = partitioned or {}
    graph = tf.Graph()
    assigns = []
    with graph.as_default():
        for i, name in enumerate(sorted(variables)):
            dtype_name, value = variables[name]
            with tf.device(f"/cpu:{i % shards}"):
                if name in partitioned:
                    parts, axis = partitioned[name]
                    whole = tf1.get_variable(name, shape=value.shape, dtype=TF_DTYPES[dtype_name],
                                             initializer=tf1.zeros_initializer(),
                                             partitioner=tf1.fixed_size_partitioner(parts, axis=axis))
                    for part in whole:  # give each part its slice of the value
                        info = part._get_save_slice_info()
                        index = tuple(slice(o, o + n) for o, n in zip(info.var_offset, info.var_shape))
                        assigns.append(part.assign(value[index]))
                else:
                    tf1.get_variable(name, initializer=to_tensor(value, dtype_name))
        if global_step:
            tf1.train.get_or_create_global_step()
        saver = tf1.train.Saver(sharded=shards > 1)
        config = tf1.ConfigProto(device_count={"CPU": shards})
        with tf1.Session(graph=graph, config=config) as sess:
            sess.run(tf1.global_variables_initializer())
            sess.run(assigns)
            return saver.save(sess, prefix, write_meta_graph=False, write_state=False)


def save_tf2(variables: dict[str, tuple[str, np.ndarray]], prefix: str) -> str:
    """tf.train.Checkpoint: keys end in /.ATTRIBUTES/VARIABLE_VALUE, plus the object graph."""
    tracked = {f"v{i}": tf.Variable(to_tensor(variables[n][1], variables[n][0]))
               for i, n in enumerate(sorted(variables))}
    return tf.train.Checkpoint(**tracked).write(prefix)


def read_tf(path: str) -> tuple[dict[str, np.ndarray], dict[str, tuple[str, tuple[int, ...]]]]:
    """Values and {name: (dtype, shape)} as TensorFlow's reader sees them."""
    reader = tf.train.load_checkpoint(path)
    dtypes = reader.get_variable_to_dtype_map()
    listed = {name: (dtypes[name].name, tuple(shape)) for name, shape in tf.train.list_variables(path)}
    return {name: reader.get_tensor(name) for name in listed}, listed


def same_values(tf_value, ours: np.ndarray, dtype_name: str) -> bool:
    """Exact equality, bit for bit for floating types (NaN payloads, signed zeros)."""
    if dtype_name == "string":
        tf_value = np.asarray(tf_value, dtype=object)
        return tf_value.shape == ours.shape and all(a == b for a, b in zip(tf_value.reshape(-1), ours.reshape(-1)))
    tf_value = np.asarray(tf_value)
    if dtype_name == "bfloat16":  # ours is the exact float32 widening: compare the top 16 bits
        return (ours.dtype == np.float32 and tf_value.shape == ours.shape
                and np.array_equal(tf_value.reshape(-1).view(np.uint16).astype(np.uint32) << 16,
                                   ours.reshape(-1).view(np.uint32)))
    if tf_value.dtype != ours.dtype or tf_value.shape != ours.shape:
        return False
    if ours.dtype.kind in "fc":
        bits = np.dtype(f"u{ours.dtype.itemsize // (2 if ours.dtype.kind == 'c' else 1)}")
        return np.array_equal(tf_value.reshape(-1).view(bits), ours.reshape(-1).view(bits))
    return np.array_equal(tf_value, ours)
