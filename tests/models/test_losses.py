"""The MIL losses on a 3-proposal toy with background + 2 classes, against values worked by hand."""

from __future__ import annotations

import math

import pytest
import torch

from liid_cli.models import losses
from liid_cli.models.mil import ClassCentres, LossConfig, image_losses

PROBS = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6]])
LABELS = torch.tensor([1.0, 1.0, 0.0])  # background + class 1; class 2 absent


def test_attention_loss_by_hand() -> None:
    targets = torch.tensor([0, 1, 1])
    # K = 2: each proposal adds log p[y~] + 1/2 * (sum of log(1 - p[k]) over the two other classes).
    by_hand = (
        -(
            (math.log(0.7) + (math.log(0.8) + math.log(0.9)) / 2)
            + (math.log(0.6) + (math.log(0.9) + math.log(0.7)) / 2)
            + (math.log(0.2) + (math.log(0.8) + math.log(0.4)) / 2)
        )
        / 3
    )
    assert losses.attention_loss(PROBS, targets).item() == pytest.approx(by_hand, rel=1e-5)


def test_pseudo_labels_threshold_to_background_and_ignore_unlabelled_classes() -> None:
    cam_scores = torch.tensor(
        [
            [0.5, 0.8],  # class 1 below eta; class 2 high but not labelled
            [1.2, 0.2],
            [0.9, 1.9],
        ]
    )
    assert losses.pseudo_labels(cam_scores, LABELS, eta=0.75).tolist() == [0, 1, 1]
    assert losses.pseudo_labels(cam_scores, LABELS, eta=1.0).tolist() == [0, 1, 0]
    assert losses.pseudo_labels(cam_scores, LABELS, eta=2.5).tolist() == [0, 0, 0]
    both = torch.tensor([1.0, 1.0, 1.0])
    assert losses.pseudo_labels(cam_scores, both, eta=0.75).tolist() == [2, 1, 2]


def test_mil_loss_by_hand() -> None:
    r = 5.0

    def z(column: list[float]) -> float:
        return math.log(sum(math.exp(r * p) for p in column) / 3) / r

    z0, z1, z2 = z([0.7, 0.1, 0.2]), z([0.2, 0.6, 0.2]), z([0.1, 0.3, 0.6])
    by_hand = -(math.log(z0) + math.log(z1)) / 2 - math.log(1 - z2)
    assert losses.mil_loss(PROBS, LABELS, r).item() == pytest.approx(by_hand, rel=1e-5)


def test_lse_pooling_limits() -> None:
    assert torch.allclose(losses.lse_pool(PROBS, r=2000.0), PROBS.max(dim=0).values, atol=1e-3)
    assert torch.allclose(losses.lse_pool(PROBS, r=1e-4), PROBS.mean(dim=0), atol=1e-4)
    middle = losses.lse_pool(PROBS, r=5.0)
    assert bool(((middle > PROBS.mean(dim=0)) & (middle < PROBS.max(dim=0).values)).all())


def test_centre_loss_by_hand_and_unknown_centres_add_nothing() -> None:
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assigned = torch.tensor([0, 1, 2])
    centres = torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, 3.0]])
    known = torch.tensor([True, True, True])
    by_hand = (0.0 + (1 - 1 / math.sqrt(2)) + (1 - 1 / math.sqrt(2))) / 3
    assert losses.centre_loss(features, assigned, centres, known).item() == pytest.approx(
        by_hand, rel=1e-5
    )
    known = torch.tensor([True, False, True])
    assert losses.centre_loss(features, assigned, centres, known).item() == pytest.approx(
        (1 - 1 / math.sqrt(2)) / 3, rel=1e-5
    )


def test_centre_update_moves_as_far_as_per_proposal_steps_and_initialises_new_classes() -> None:
    centres = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    known = torch.tensor([True, True, False])
    features = torch.tensor([[3.0, 0.0], [0.0, 1.0], [0.0, 3.0], [4.0, 4.0]])
    assigned = torch.tensor([1, 1, 1, 2])
    losses.update_centres(centres, known, features, assigned, theta=0.5)
    # class 1: mean of its three features is (1, 4/3); three steps of theta 0.5 move a centre
    # 1 - 0.5^3 = 7/8 of the way: c <- (1, 1) + 7/8 * ((1, 4/3) - (1, 1)) = (1, 1 + 7/24)
    assert torch.allclose(centres, torch.tensor([[1.0, 0.0], [1.0, 1 + 7 / 24], [4.0, 4.0]]))
    assert known.tolist() == [True, True, True]


def test_image_losses_switches_and_weights() -> None:
    logits = torch.log(PROBS)
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    cam_scores = torch.tensor([[0.5, 0.8], [1.2, 0.2], [0.9, 1.9]])
    centres = ClassCentres(num_classes=2, feature_dim=2)
    settings = {
        "attention": True,
        "mil": True,
        "centre": True,
        "alpha": 0.5,
        "beta": 0.5,
        "gamma": 0.1,
        "eta": 0.75,
        "r": 5.0,
        "theta": 0.01,
        "pooling": "box",
    }
    result = image_losses(logits, features, LABELS, cam_scores, centres, LossConfig(**settings))
    expected = 0.5 * losses.attention_loss(PROBS, torch.tensor([0, 1, 1])) + 0.5 * losses.mil_loss(
        PROBS, LABELS, 5.0
    )  # no centre known yet: L_Cent = 0
    assert result.total.item() == pytest.approx(expected.item(), rel=1e-5)
    assert result.assigned.tolist() == [0, 1, 2]
    only_mil = image_losses(
        logits,
        features,
        LABELS,
        cam_scores,
        centres,
        LossConfig(**settings | {"attention": False, "centre": False}),
    )
    assert set(only_mil.parts) == {"mil"}
    assert only_mil.total.item() == pytest.approx(
        0.5 * losses.mil_loss(PROBS, LABELS, 5.0).item(), rel=1e-5
    )
