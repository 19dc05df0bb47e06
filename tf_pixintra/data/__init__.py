"""Data sets in their official on-disk layouts, tf.data pipelines and TFRecords."""
