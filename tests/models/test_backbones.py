"""The one backbone factory: offline ImageNet weights that recognise real photos, the weight
packages' key mapping, and every trunk user building timm and torchvision trunks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from skimage import data as photos

from liid_cli.errors import LiidError
from liid_cli.models import weights as weight_sources
from liid_cli.models.backbones import (
    TrunkConfig,
    build_classifier,
    build_trunk,
    freeze_levels,
    image_to_tensor,
    input_size_of,
)
from liid_cli.models.cam import CamClassifier
from liid_cli.models.crop_embedding import box_crops, build_embedder, embed_boxes
from liid_cli.models.mil import MilNetwork

# ImageNet-1k class indices.
CATS = {281, 282, 283, 284, 285, 286, 287}  # tabby, tiger cat, Persian, Siamese, Egyptian cat, ...
ESPRESSO_OR_CUP = {967, 968, 504}  # espresso, cup, coffee mug


def _top5(model: torch.nn.Module, image: object) -> set[int]:
    with torch.no_grad():
        logits = model(image_to_tensor(image, (224, 224))[None])
    return set(logits[0].topk(5).indices.tolist())


def test_offline_imagenet_lite0_recognises_real_photos(monkeypatch: pytest.MonkeyPatch) -> None:
    # No network: any attempt to reach a model hub fails the test.
    monkeypatch.setattr(timm, "create_model", _no_download(timm.create_model))
    model = build_classifier("tf_efficientnet_lite0", "imagenet")
    assert _top5(model, photos.chelsea()) & CATS
    assert _top5(model, photos.coffee()) & ESPRESSO_OR_CUP


def test_crop_embeddings_tell_a_cat_from_a_coffee_cup() -> None:
    """Boxes around the cat of one photo embed closer to each other than to the coffee cup."""
    cat, coffee = photos.chelsea(), photos.coffee()
    embedder = build_embedder("tf_efficientnet_lite0", "imagenet")
    cats = embed_boxes(embedder, cat, np.array([[100, 20, 400, 300], [80, 0, 451, 300]]), 96, "cpu")
    cup = embed_boxes(embedder, coffee, np.array([[0, 0, 600, 400]]), 96, "cpu")
    assert cats.shape == (2, 1280) and cup.shape == (1, 1280)
    unit = torch.nn.functional.normalize(torch.tensor(np.concatenate([cats, cup])), dim=1)
    cosine = (unit @ unit.T).numpy()
    assert cosine[0, 1] > cosine[0, 2] + 0.1 and cosine[0, 1] > cosine[1, 2] + 0.1


def test_crops_are_clipped_to_the_image_and_never_empty() -> None:
    image = np.zeros((10, 20, 3), np.uint8)
    image[:, 10:] = 255
    crops = box_crops(image, np.array([[15, -5, 40, 30], [3, 3, 3, 3]], np.float32), 8)
    assert crops.shape == (2, 3, 8, 8)
    assert torch.allclose(crops[0], torch.ones(3, 8, 8))  # only the white half's pixels
    assert torch.allclose(crops[1], torch.zeros(3, 8, 8))  # a zero-size box: one black pixel


def _no_download(create):  # type: ignore[no-untyped-def]
    def guarded(*args, **kwargs):  # type: ignore[no-untyped-def]
        assert not kwargs.get("pretrained"), "tried to download weights"
        return create(*args, **kwargs)

    return guarded


@pytest.mark.parametrize("name", sorted(weight_sources.WEIGHT_PACKAGES))
def test_every_weight_package_maps_onto_every_timm_tensor(name: str) -> None:
    path = weight_sources.packaged_file(name)
    assert path is not None, f"pip install {weight_sources.WEIGHT_PACKAGES[name].distribution}"
    model = timm.create_model(name, pretrained=False)
    state = weight_sources.load_packaged(path, [len(stage) for stage in model.blocks])
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.equal(model.state_dict()["conv_stem.weight"], state["conv_stem.weight"])


def test_a_file_that_is_not_an_efficientnet_checkpoint_is_a_one_line_error(tmp_path: Path) -> None:
    wrong = tmp_path / "weights.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, wrong)
    with pytest.raises(LiidError, match="not an EfficientNet-PyTorch state dict"):
        weight_sources.load_packaged(wrong, [1, 2, 2, 3, 3, 4, 1])
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(LiidError, match="unreadable weight file"):
        weight_sources.load_packaged(garbage, [1, 2, 2, 3, 3, 4, 1])


def test_weights_of_another_architecture_are_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "resnet.pt"
    torch.save(build_trunk("resnet18", "none").state_dict(), path)
    with pytest.raises(LiidError, match="not a tf_efficientnet_lite0 state dict"):
        build_trunk("tf_efficientnet_lite0", str(path))


def test_unknown_backbone_names_the_choices() -> None:
    with pytest.raises(LiidError, match="unknown backbone 'no_such_net'"):
        build_trunk("no_such_net", "none")


@pytest.mark.parametrize("name", ["tf_efficientnet_lite0", "resnet18"])
def test_trunks_give_their_levels_at_their_strides_and_normalise_themselves(name: str) -> None:
    trunk = build_trunk(name, "none", levels=(1, 2, 3, 4), output_stride=16)
    maps = trunk(torch.rand(2, 3, 64, 96))
    assert trunk.strides == (4, 8, 16, 16)
    assert [m.shape[-2:] for m in maps] == [(16, 24), (8, 12), (4, 6), (4, 6)]
    assert [m.shape[1] for m in maps] == list(trunk.channels)
    grey = torch.full((1, 4, 2, 2), 0.5)
    normalised = trunk.normalise(grey)
    assert torch.allclose(normalised[:, 3], grey[:, 3])  # a fourth channel passes unchanged


@pytest.mark.parametrize("name", ["tf_efficientnet_lite0", "resnet18"])
def test_frozen_levels_keep_their_weights_and_the_rest_trains(name: str) -> None:
    trunk = build_trunk(name, "none", levels=(4,))
    freeze_levels(trunk, 3)
    frozen = {n for n, p in trunk.body.named_parameters() if not p.requires_grad}
    trained = {n for n, p in trunk.body.named_parameters() if p.requires_grad}
    stem = "conv_stem.weight" if name.startswith("tf_") else "conv1.weight"
    deep = "blocks.5.0.conv_pw.weight" if name.startswith("tf_") else "layer4.0.conv1.weight"
    assert stem in frozen and deep in trained


@pytest.mark.parametrize("name", ["tf_efficientnet_lite0", "resnet18"])
def test_cam_classifier_and_mil_network_build_through_the_factory(name: str) -> None:
    config = TrunkConfig(backbone=name, weights="none", output_stride=16, norm="frozen_bn",
                         frozen_levels=1)
    images = torch.rand(1, 3, 64, 64)
    classifier = CamClassifier(config, num_classes=4)
    assert classifier(images).shape == (1, 4)
    assert classifier.class_maps(images).shape == (1, 4, 4, 4)
    network = MilNetwork(config, num_classes=4, roi_op="align", roi_size=2)
    logits, features = network(images, [torch.tensor([[0.0, 0.0, 32.0, 40.0]])])
    assert logits.shape == (1, 5) and features.shape == (1, network.trunk.channels[-1])


def test_input_size_keeps_the_aspect_ratio_and_the_cost() -> None:
    assert input_size_of(480, 640, 320, keep_aspect=False) == (320, 320)
    assert input_size_of(160, 160, 320, keep_aspect=True) == (320, 320)
    height, width = input_size_of(480, 640, 320, keep_aspect=True)
    assert (height, width) == (277, 370) and abs(height * width / 320**2 - 1) < 0.01
