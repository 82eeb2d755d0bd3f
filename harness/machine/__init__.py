"""What the machine is: CPU features and OS permissions, library builds, cores, contention."""
