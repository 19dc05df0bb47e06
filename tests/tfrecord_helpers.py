"""Test-only TFRecord writers and readers built on tf_pixintra.data.tfrecords.

The package writes records only through the pseudo stage; these helpers
write and read record sets directly, for the tests of the readers and the
validator.
"""

import tensorflow as tf

from tf_pixintra import io_utils
from tf_pixintra import run_layout
from tf_pixintra.data import tfrecords


def write_shard(out_dir, name, shard_index, num_shards, examples):
    """Writes one shard of `examples` with `tfrecords.writers`; returns its path."""
    path = io_utils.join(out_dir, run_layout.shard_name(name, shard_index, num_shards))
    with tfrecords.writers({0: path}) as write:
        for example in examples:
            write[0](example)
    return path


def write_records(out_dir, name, examples, num_shards, settings):
    """Writes `examples` round robin (example i to shard i % num_shards), then
    the index; returns the index path. Nothing is renamed into place unless
    every example was written."""
    paths = {i: io_utils.join(out_dir, run_layout.shard_name(name, i, num_shards))
             for i in range(num_shards)}
    with tfrecords.writers(paths) as write:
        for i, example in enumerate(examples):
            write[i % num_shards](example)
    return tfrecords.write_index(out_dir, name, num_shards, settings)


def example_dataset(index_path):
    """`decode_example` dicts of every record, shard after shard, in file order."""
    paths = tfrecords.read_index(index_path)["paths"]
    return tf.data.TFRecordDataset(paths).map(tfrecords.decode_example)
