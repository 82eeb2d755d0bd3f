"""Starting workers: admission of a mode, the worker environment and job file, one child-process
runner, and the launchers (one process, torchrun ranks, instances)."""
