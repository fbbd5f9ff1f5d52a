"""Downstream models on the pseudo labels: Mask R-CNN and DeepLabV3, training and prediction."""
