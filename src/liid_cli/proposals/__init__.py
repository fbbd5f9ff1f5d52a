"""Segment-based object proposals: selective search with masks, importers, filtering, storage."""
