"""TensorFlow checkpoints read without TensorFlow: MLCommons' phase-1 BERT as our model_save.

table: the LevelDB table of a checkpoint's .index; bundle: its entries and the tensors in the
data shards; bert: MLCommons' variable names onto our model; convert: `harness convert-checkpoint`.
"""
