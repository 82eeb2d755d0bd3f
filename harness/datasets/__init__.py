"""MLCommons BERT TFRecords: reading with CRC checks, phase split, sharding, and synthesis."""
