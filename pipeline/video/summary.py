"""A clip's holding-up figures as short phrases, for report.html and the terminal alike. Reads the
report's dict (report.json's `video`), so old reports and new ones read the same way; imports nothing heavy."""

from __future__ import annotations

DRIFT_NAMES = {"sharpness": "sharpness against the input", "own_sharpness": "own sharpness"}


def holding_up(video: dict) -> list[str]:
    """The frames against photo-path stylizations of them, then the drift from first frames to last of the longest shot."""
    parts = [f"frame {gap['frame']}: style ×{gap['style']:.2f}, content ×{gap['content']:.2f}, sharpness ×{gap['sharpness']:.2f} of a photo's"
             for gap in video.get("photo_gaps") or []]
    drift = video.get("drift")
    if drift:
        parts.append("drift over the longest shot: " + ", ".join(f"{DRIFT_NAMES.get(name, name)} {change:+.0%}" for name, change in drift.items()))
    return parts
