"""Clips: segments, the flow-warped frame chain, work folders, and the join."""
