"""Networks: backbones, the CAM classifier, the MIL network and its losses, downstream models."""
