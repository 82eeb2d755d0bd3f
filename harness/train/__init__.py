"""One phase of BERT pre-training in a worker: config, Trainer, its components."""
