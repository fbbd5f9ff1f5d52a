"""Metrics against ground truth: COCO mask AP, ABO, mIoU, proposal recall."""
