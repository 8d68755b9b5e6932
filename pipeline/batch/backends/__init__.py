"""Where a run's tasks execute: this process (local) or a Ray cluster (ray)."""
