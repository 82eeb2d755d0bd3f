"""harness: BERT-Large pre-training benchmark and performance-validation harness for Xeon CPUs."""
