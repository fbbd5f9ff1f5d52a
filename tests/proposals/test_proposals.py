"""`liid proposals` and `liid eval proposals` end to end on the tiny demo set: importers round-trip,
resume, shards, workers, and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.io
from PIL import Image
from tests.helpers import assert_one_line_error, liid

from liid_cli import artifacts, masks
from liid_cli.config import load_stage_config
from liid_cli.data.index import load_index
from liid_cli.errors import LiidError
from liid_cli.fileio import file_sha256
from liid_cli.proposals.store import ImageProposals, open_proposals
from liid_cli.runner import run_stage
from liid_cli.stages import proposals as stage

# keep every imported mask: no filtering beyond the empty ones
KEEP_ALL = ["top_n=100", "max_iou=1.0", "diverse_iou=1.0", "min_area=0.0", "max_area=1.0"]


def _run(
    index: Path,
    run_dir: Path,
    overrides: list[str] = (),
    source: Path | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    config = load_stage_config(
        "proposals", stage.ProposalsConfig, profile="demo", overrides=list(overrides)
    )
    return run_stage(
        stage.SPEC,
        config,
        run_dir=run_dir,
        index_path=index,
        workers=workers,
        extra_inputs={"source": source} if source else None,
    )


def _read(run_dir: Path, index: Path) -> list[ImageProposals]:
    with open_proposals(run_dir, index) as store:
        return list(store)


def _instance_masks(tiny_demo: Path) -> dict[int, np.ndarray]:
    """Per val image: its ground-truth masks plus a rectangle, (M, H, W), as proposals to import."""
    index = load_index(tiny_demo / "index_val.json")
    truth = json.loads((tiny_demo / "gt_val.json").read_text())
    stacks = {}
    for image in index.images:
        height, width = image["height"], image["width"]
        rectangle = np.zeros((height, width), bool)
        rectangle[2 : height // 2, 3 : width // 3] = True
        found = [
            masks.decode(a["segmentation"])
            for a in truth["annotations"]
            if a["image_id"] == image["id"]
        ]
        stacks[image["id"]] = np.stack([rectangle, *found])
    return stacks


def _check_same_masks(read: list[ImageProposals], expected: dict[int, np.ndarray]) -> None:
    assert sorted(p.image_id for p in read) == sorted(expected)
    for proposals in read:
        assert np.array_equal(proposals.masks(), expected[proposals.image_id])
        assert np.all(np.diff(proposals.scores) < 0)


def test_selective_search_stage_writes_ranked_masks_and_eval_reads_them(
    tiny_demo: Path, tmp_path: Path
) -> None:
    index = tiny_demo / "index_val.json"
    result = liid("proposals", "--data", index, "--run", tmp_path, "--profile", "demo", "-q")
    assert result.exit_code == 0, result.output
    read = _read(tmp_path, index)
    assert [p.image_id for p in read] == [im["id"] for im in load_index(index).images]
    for proposals in read:
        assert 0 < len(proposals) <= 20
        decoded = proposals.masks()
        assert np.array_equal(proposals.boxes, np.stack([masks.box_xyxy(m) for m in decoded]))
    result = liid("eval", "proposals", "--run", tmp_path)
    assert result.exit_code == 0, result.output
    assert "recall" in result.output.lower() or "R@.5" in result.output
    metrics = json.loads((tmp_path / "eval" / "proposals" / "metrics.json").read_text())["metrics"]
    assert metrics["num_ground_truth"] > 0 and 0.5 < metrics["recall@0.5"] <= 1.0
    again = liid("proposals", "--data", index, "--run", tmp_path, "--profile", "demo")
    assert again.exit_code == 0 and "up to date" in again.output


def test_mcg_import_round_trips(tiny_demo: Path, tmp_path: Path) -> None:
    expected = _instance_masks(tiny_demo)
    folder = tmp_path / "mcg"
    folder.mkdir()
    for image in load_index(tiny_demo / "index_val.json").images:
        stack = expected[image["id"]]
        # superpixels = the distinct membership patterns of the pixels (as MCG's, ids from 1)
        codes = np.packbits(stack, axis=0, bitorder="little")
        flat = codes.reshape(codes.shape[0], -1).T
        _, superpixels = np.unique(flat, axis=0, return_inverse=True)
        superpixels = superpixels.reshape(stack.shape[1:]) + 1
        labels = np.empty((len(stack), 1), dtype=object)
        for i, mask in enumerate(stack):
            labels[i, 0] = np.unique(superpixels[mask]).astype(np.float64)[None, :]
        scipy.io.savemat(
            folder / f"{image['name']}.mat",
            {
                "superpixels": superpixels.astype(np.uint16),
                "labels": labels,
                "scores": np.linspace(1, 0.1, len(stack))[:, None],
            },
        )
    result = liid(
        "proposals",
        "--data",
        tiny_demo / "index_val.json",
        "--run",
        tmp_path / "run",
        "--import",
        folder,
        *[arg for o in KEEP_ALL for arg in ("--set", o)],
    )
    assert result.exit_code == 0, result.output
    _check_same_masks(_read(tmp_path / "run", tiny_demo / "index_val.json"), expected)


def test_rle_json_import_round_trips_and_keeps_images_without_proposals(
    tiny_demo: Path, tmp_path: Path
) -> None:
    expected = _instance_masks(tiny_demo)
    empty_id = min(expected)
    expected[empty_id] = expected[empty_id][:0]
    entries = [
        {"image_id": image_id, "segmentation": rle, "score": 1.0 - 0.1 * i}
        for image_id, stack in expected.items()
        for i, rle in enumerate(masks.encode_many(stack))
    ]
    path = tmp_path / "sam.json"
    path.write_text(json.dumps(entries))
    index = tiny_demo / "index_val.json"
    manifest = _run(index, tmp_path / "run", ["method=rle_json", *KEEP_ALL], source=path)
    assert manifest["metrics"]["images_without_proposals"] == 1
    _check_same_masks(_read(tmp_path / "run", index), expected)


def test_label_png_import_round_trips(tiny_demo: Path, tmp_path: Path) -> None:
    folder = tmp_path / "s4net"
    folder.mkdir()
    expected = {}
    for image in load_index(tiny_demo / "index_val.json").images:
        height, width = image["height"], image["width"]
        label_map = np.zeros((height, width), np.uint8)
        label_map[: height // 2, : width // 2] = 1
        label_map[height // 2 :, width // 3 :] = 2
        label_map[1:4, -5:-1] = 3
        Image.fromarray(label_map).save(folder / f"{image['name']}.png")
        expected[image["id"]] = np.stack([label_map == v for v in (1, 2, 3)])
    index = tiny_demo / "index_val.json"
    _run(index, tmp_path / "run", ["method=label_png", *KEEP_ALL], source=folder)
    _check_same_masks(_read(tmp_path / "run", index), expected)


def test_interrupted_run_resumes_without_recomputing_finished_chunks(
    tiny_demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = tiny_demo / "index_train.json"  # 24 images = 3 chunks
    calls: list[int] = []
    real = stage.proposals_for_image

    def failing_after_two_chunks(
        config: stage.ProposalsConfig, task: stage.ImageTask
    ) -> ImageProposals:
        if len(calls) == 2 * stage.CHUNK_IMAGES:
            raise RuntimeError("interrupted")
        calls.append(task.record["id"])
        return real(config, task)

    monkeypatch.setattr(stage, "proposals_for_image", failing_after_two_chunks)
    with pytest.raises(RuntimeError, match="interrupted"):
        _run(index, tmp_path)
    assert not (tmp_path / "proposals").exists()
    monkeypatch.setattr(
        stage, "proposals_for_image", lambda c, t: (calls.append(t.record["id"]), real(c, t))[1]
    )
    _run(index, tmp_path)
    assert len(calls) == 24 and len(set(calls)) == 24  # every image computed exactly once
    assert not artifacts.cache_dir(tmp_path, "proposals").exists()


def test_shards_join_into_the_same_file_as_one_run_and_workers_agree(
    tiny_demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = tiny_demo / "index_val.json"  # 8 images = 1 chunk; smaller chunks make 2 shards useful
    monkeypatch.setattr(stage, "CHUNK_IMAGES", 3)
    config = load_stage_config("proposals", stage.ProposalsConfig, profile="demo")
    for shard in range(2):
        part = stage.run_shard(
            config,
            index_path=index,
            run_dir=tmp_path / "sharded",
            seed=0,
            workers=1,
            shard=shard,
            count=2,
            source=None,
        )
        assert part.name == f"part-{shard:05d}-of-00002.h5"
    shutil.rmtree(artifacts.cache_dir(tmp_path / "sharded", "proposals"))
    manifest = _run(index, tmp_path / "sharded")
    assert manifest["metrics"]["from_shard_parts"] == 8
    _run(index, tmp_path / "pooled", workers=2)
    sharded, pooled = _read(tmp_path / "sharded", index), _read(tmp_path / "pooled", index)
    assert [p.masks_rle for p in sharded] == [p.masks_rle for p in pooled]


def test_flat_image_is_kept_with_zero_proposals_and_corrupt_image_is_one_line_error(
    tiny_demo: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    shutil.copytree(tiny_demo, data)
    index = load_index(data / "index_val.json")
    flat, broken = index.images[0], index.images[1]
    Image.fromarray(np.full((flat["height"], flat["width"], 3), 90, np.uint8)).save(
        index.image_path(flat)
    )
    _run(data / "index_val.json", tmp_path / "run")
    read = {p.image_id: p for p in _read(tmp_path / "run", data / "index_val.json")}
    assert len(read[flat["id"]]) == 0 and len(read) == len(index.images)
    index.image_path(broken).write_bytes(b"not an image")
    result = liid(
        "proposals",
        "--data",
        data / "index_val.json",
        "--run",
        tmp_path / "run2",
        "--profile",
        "demo",
        "-q",
    )
    assert_one_line_error(result, broken["file_name"], "cannot decode")


def test_proposals_of_another_data_set_are_refused(tiny_demo: Path, tmp_path: Path) -> None:
    val, train = tiny_demo / "index_val.json", tiny_demo / "index_train.json"
    stacks = _instance_masks(tiny_demo)
    _run(val, tmp_path / "run", ["method=rle_json", *KEEP_ALL], source=_rle_file(tmp_path, stacks))
    with pytest.raises(LiidError, match="another data set"), open_proposals(tmp_path / "run", train):
        pass
    result = liid("eval", "proposals", "--run", tmp_path / "run", "--data", train)
    assert_one_line_error(result, "proposals.h5", "another data set")
    result = liid(
        "proposals",
        "--data",
        train,
        "--run",
        tmp_path / "run2",
        "--import",
        _rle_file(tmp_path, stacks),
        "-q",
    )
    assert_one_line_error(result, "sam.json", "not in the data set index", "another data set")
    folder = tmp_path / "pngs"
    folder.mkdir()
    for image in load_index(val).images:
        Image.fromarray(np.ones((7, 9), np.uint8)).save(folder / f"{image['name']}.png")
    result = liid("proposals", "--data", val, "--run", tmp_path / "run3", "--import", folder, "-q")
    assert_one_line_error(result, ".png", "7x9", "another data set")
    assert file_sha256(val) != file_sha256(train)


def _rle_file(tmp_path: Path, stacks: dict[int, np.ndarray]) -> Path:
    path = tmp_path / "sam.json"
    path.write_text(
        json.dumps(
            [
                {"image_id": i, "segmentation": rle}
                for i, stack in stacks.items()
                for rle in masks.encode_many(stack)
            ]
        )
    )
    return path


def test_importer_options_are_checked(tiny_demo: Path, tmp_path: Path) -> None:
    result = liid(
        "proposals",
        "--data",
        tiny_demo / "index_val.json",
        "--run",
        tmp_path,
        "--import",
        tmp_path / "nowhere",
    )
    assert_one_line_error(result, "nowhere", "not found")
    result = liid(
        "proposals",
        "--data",
        tiny_demo / "index_val.json",
        "--run",
        tmp_path,
        "--set",
        "method=mcg",
        "-q",
    )
    assert_one_line_error(result, "--import")
    result = liid(
        "proposals",
        "--data",
        tiny_demo / "index_val.json",
        "--run",
        tmp_path,
        "--import",
        tmp_path,
        "--set",
        "method=mcg",
    )
    assert_one_line_error(result, "--import expects")
    result = liid(
        "proposals", "--data", tiny_demo / "index_val.json", "--run", tmp_path, "--shard", "2/2"
    )
    assert_one_line_error(result, "--shard", "0 <= i < n")
