"""What a comparison runs: presets, the plan of runs, and its executor."""
