"""The labelled nerfstudio-data dataparser on the sample scene, with and without labels."""

from __future__ import annotations

import json
import shutil

import pytest

from jacobinerf_ns.dataparsers.nerfstudio_labelled import LabelledNerfstudioDataParserConfig
from jacobinerf_ns.errors import JacobiNerfError
from jacobinerf_ns.labels import INSTANCES, SEMANTICS
from tests.helpers import SCENE_EVAL_FRAMES, SCENE_VIEWS


def test_split_and_labels(sample_scene):
    parser = LabelledNerfstudioDataParserConfig(data=sample_scene).setup()
    train, test = parser.get_dataparser_outputs("train"), parser.get_dataparser_outputs("test")
    assert [p.name for p in test.image_filenames] == SCENE_EVAL_FRAMES
    assert (
        len(train.image_filenames) == SCENE_VIEWS - len(SCENE_EVAL_FRAMES)
        and "frame_00000.png" == train.image_filenames[0].name
    )
    for outputs in (train, test):
        for kind in (SEMANTICS, INSTANCES):
            labels = outputs.metadata[kind]
            assert [p.name for p in labels.filenames] == [p.name for p in outputs.image_filenames]
            assert labels.filenames[0].parent.name == ("semantics" if kind == SEMANTICS else "instances")
    classes = json.loads((sample_scene / "classes.json").read_text())
    assert train.metadata[SEMANTICS].classes == [row["name"] for row in classes["semantic_classes"]]
    assert train.metadata[INSTANCES].classes[1] == classes["instances"][1]["name"]


def test_folder_without_labels_trains_like_nerfstudio_data(sample_scene, tmp_path):
    plain = tmp_path / "plain"
    shutil.copytree(sample_scene / "images", plain / "images")
    meta = json.loads((sample_scene / "transforms.json").read_text())
    for frame in meta["frames"]:
        frame.pop("semantics_file_path")
        frame.pop("instance_file_path")
        frame.pop("depth_file_path")
    (plain / "transforms.json").write_text(json.dumps(meta))
    outputs = LabelledNerfstudioDataParserConfig(data=plain).setup().get_dataparser_outputs("train")
    assert SEMANTICS not in outputs.metadata and INSTANCES not in outputs.metadata
    assert len(outputs.image_filenames) == SCENE_VIEWS - len(SCENE_EVAL_FRAMES)


def test_partial_labels_and_missing_folder_are_clear_errors(sample_scene, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(sample_scene, broken)
    meta = json.loads((broken / "transforms.json").read_text())
    meta["frames"][3].pop("semantics_file_path")
    (broken / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(JacobiNerfError, match="give every frame one, or none"):
        LabelledNerfstudioDataParserConfig(data=broken).setup().get_dataparser_outputs("train")
    meta = json.loads((sample_scene / "transforms.json").read_text())
    meta["frames"][2].pop("depth_file_path")
    (broken / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(JacobiNerfError, match="frame_00002.png of transforms.json has no depth_file_path"):
        LabelledNerfstudioDataParserConfig(data=broken).setup().get_dataparser_outputs("train")
    with pytest.raises(JacobiNerfError, match="transforms.json"):
        LabelledNerfstudioDataParserConfig(data=tmp_path / "nowhere").setup().get_dataparser_outputs("train")
