"""The three losses of the MIL network (spec, Stage 3) for the proposals of one image.

Notation: M proposals, K object classes, class 0 = background. `probs` (M, K+1) are softmax
outputs, `labels` (K+1,) the image label vector (1 for background and each labelled class).
"""

from __future__ import annotations

import math

import torch

EPS = 1e-6


def pseudo_labels(cam_scores: torch.Tensor, labels: torch.Tensor, eta: float) -> torch.Tensor:
    """CAM pseudo labels y~: 0 if R[k] < eta for every labelled k, else 1 + argmax over labelled k.

    `cam_scores` R is (M, K) for classes 1..K; unlabelled classes are never chosen.
    """
    masked = cam_scores.masked_fill(~labels[1:].bool()[None], -math.inf)
    best, arg = masked.max(dim=1)
    return torch.where(best >= eta, arg + 1, torch.zeros_like(arg))


def attention_loss(probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """L_Att = -1/M sum_j [log p_j[y~_j] + 1/K sum_{k != y~_j} log(1 - p_j[k])]."""
    num_classes = probs.shape[1] - 1
    target_mask = torch.nn.functional.one_hot(targets, probs.shape[1]).bool()
    positive = torch.log(probs.clamp_min(EPS))[target_mask]
    negative = torch.log((1.0 - probs).clamp_min(EPS)).masked_fill(target_mask, 0.0).sum(dim=1)
    return -(positive + negative / num_classes).mean()


def lse_pool(probs: torch.Tensor, r: float) -> torch.Tensor:
    """Smooth max over proposals: Z[k] = 1/r log(1/M sum_j exp(r p_j[k])), (M, C) -> (C,).

    Written as max + 1/r log1p(mean(expm1(r (p - max)))), which stays exact for small r too.
    """
    peak = probs.max(dim=0).values.detach()
    return peak + torch.log1p(torch.expm1(r * (probs - peak)).mean(dim=0)) / r


def mil_loss(probs: torch.Tensor, labels: torch.Tensor, r: float) -> torch.Tensor:
    """L_MIL: BCE of the LSE-pooled image scores against the label vector (background included)."""
    image_scores = lse_pool(probs, r).clamp(EPS, 1.0 - EPS)
    present = labels.bool()
    loss = -torch.log(image_scores[present]).mean()
    if (~present).any():
        loss = loss - torch.log(1.0 - image_scores[~present]).mean()
    return loss


def centre_loss(
    features: torch.Tensor, assigned: torch.Tensor, centres: torch.Tensor, known: torch.Tensor
) -> torch.Tensor:
    """L_Cent = 1/M sum_j (1 - cos(f_j, c_{y^_j})); proposals whose centre is not yet known add 0."""
    similarity = torch.nn.functional.cosine_similarity(
        features, centres[assigned].to(features.dtype), dim=1
    )
    return ((1.0 - similarity) * known[assigned].to(features.dtype)).sum() / len(features)


@torch.no_grad()
def update_centres(
    centres: torch.Tensor,
    known: torch.Tensor,
    features: torch.Tensor,
    assigned: torch.Tensor,
    theta: float,
) -> None:
    """In place: c_k moves towards the mean of this step's n_k features assigned to k by
    1 - (1 - theta)^n_k, as far as n_k per-proposal EMA steps c <- c + theta (f - c) move it, but
    independent of the proposals' order. A class seen for the first time starts at that mean.
    """
    count = torch.zeros(len(centres), device=centres.device).index_add_(
        0, assigned, torch.ones_like(assigned, dtype=torch.float32)
    )
    total = torch.zeros_like(centres).index_add_(0, assigned, features.detach().to(centres.dtype))
    seen = count > 0
    mean = total[seen] / count[seen, None]
    rate = 1.0 - (1.0 - theta) ** count[seen, None]
    step = torch.where(known[seen, None], rate * (mean - centres[seen]), mean - centres[seen])
    centres[seen] += step
    known[seen] = True
