"""Nightly runs: manifest, plan, tasks, the runner and its backends, and the report."""
