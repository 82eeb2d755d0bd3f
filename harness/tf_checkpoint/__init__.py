"""TensorFlow checkpoints read without TensorFlow.

table: the LevelDB table of a checkpoint's .index; bundle: its entries and the tensors in the
data shards.
"""
