"""Data sets: the COCO-style index every stage reads, and readers that make it."""
