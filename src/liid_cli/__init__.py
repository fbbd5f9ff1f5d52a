"""liid: weakly supervised instance segmentation from image-level labels, as staged commands."""

__version__ = "0.1.0"
