"""Starting workers: admission of a mode, the worker environment and job file, one child-process
runner, and the launchers (one process, torchrun ranks, several together), handed the task
they run."""
