"""OpenCV, quiet: its own warnings and those of the FFmpeg inside it ("moov atom not found")
would print before our one-line error, so both log levels are set before it loads."""

import os

os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET

import cv2  # noqa: E402

__all__ = ["cv2"]
