"""Files in and out, below the engine: atomic writes and input checks, still images, and video through the one ffmpeg."""
