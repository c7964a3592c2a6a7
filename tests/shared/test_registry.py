import json

import pytest

from shared.registry import Registry, UnknownModel
from tests.utils.samples import DIGITS


def write(root, folder_name, version, **over):
    folder = root / folder_name / version
    folder.mkdir(parents=True)
    manifest = {"name": folder_name, "version": version, "input_shape": [8, 8, 1], "labels": ["a", "b"],
                "preprocessing": {"color_mode": "L"}, **over}
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_resolve_default_name_and_version(tmp_path):
    for v in ("1", "2", "10"):
        write(tmp_path, "m", v)
    write(tmp_path, "other", "1")
    registry = Registry(tmp_path, "m")
    assert registry.resolve(None).key == "m:10"  # numeric, not string, order
    assert registry.resolve("m:2").key == "m:2"
    assert registry.resolve("other").key == "other:1"
    with pytest.raises(UnknownModel, match="m:1, m:10, m:2, other:1"):
        registry.resolve("m:3")


def test_manifest_errors_are_explicit(tmp_path):
    write(tmp_path, "rgb", "1", preprocessing={"color_mode": "RGB"})
    with pytest.raises(ValueError, match="channels"):
        _ = Registry(tmp_path, "rgb").manifests
    bad = tmp_path / "x"
    bad.mkdir()
    write(bad, "y", "1", name="z")
    with pytest.raises(ValueError, match="must match its folder"):
        _ = Registry(bad, "y").manifests


def test_committed_default_model():
    manifest = DIGITS
    assert manifest.artifact_path.is_file()
    assert manifest.labels == [str(d) for d in range(10)]


def test_features_manifests(tmp_path):
    features = {"input": {"kind": "features", "names": ["a", "b", "c"]}, "input_shape": [3]}
    write(tmp_path, "f", "1", **features)
    manifest = Registry(tmp_path, "f").resolve(None)
    assert (manifest.input.kind, manifest.input.names, manifest.input_shape) == ("features", ["a", "b", "c"], (3,))
    assert Registry(tmp_path, "f").resolve(None).train is None
    for name, over, error in (
        ("shape", {**features, "input_shape": [4]}, "one per feature name"),
        ("twice", {**features, "input": {"kind": "features", "names": ["a", "a", "c"]}}, "each once"),
        ("nonames", {**features, "input": {"kind": "features"}}, "needs `names`"),
        ("imagenames", {"input": {"names": ["a"]}}, "features input only"),
        ("flat", {"input_shape": [64]}, "height, width, channels"),
        ("train", {"train": "os.system"}, "train"),
    ):
        root = tmp_path / name
        write(root, "m", "1", **over)
        with pytest.raises(ValueError, match=error):
            _ = Registry(root, "m").manifests


def test_committed_iris_model():
    iris = Registry(DIGITS.directory.parent.parent, "digits").resolve("iris")
    assert iris.artifact_path.is_file()
    assert iris.input.names == ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    assert iris.train == "models.train_iris"
    assert iris.metrics["heldout_accuracy"] >= 0.9


def test_refresh_finds_new_versions_and_defaults_pin_one(tmp_path):
    write(tmp_path, "m", "1")
    registry = Registry(tmp_path, "m", strict=False)
    assert registry.resolve("m").key == "m:1"
    assert registry.refresh() is False  # nothing changed
    write(tmp_path, "m", "2")
    assert registry.resolve("m").key == "m:1"  # read once until refreshed
    assert registry.refresh() is True
    assert registry.resolve(None).key == "m:2"  # no default set: the newest
    registry.set_defaults({"m": "1"})
    assert (registry.resolve("m").key, registry.resolve(None).key, registry.resolve("m:2").key) == ("m:1", "m:1", "m:2")
    assert registry.default_keys == {"m:1"}
    assert [m.key for m in registry.latest] == ["m:2"]
    registry.set_defaults({"m": "7"})  # a default that is not on disk: the newest
    assert registry.resolve("m").key == "m:2"


def test_a_lenient_registry_reports_invalid_manifests_and_keeps_the_others(tmp_path):
    write(tmp_path, "m", "1")
    registry = Registry(tmp_path, "m", strict=False)
    assert registry.invalid == {}
    (tmp_path / "m" / "2").mkdir()
    (tmp_path / "m" / "2" / "manifest.json").write_text("{not json")
    assert registry.refresh() is True
    assert list(registry.manifests) == ["m:1"]
    assert "invalid model manifest" in registry.invalid["m:2"]
    with pytest.raises(ValueError, match="invalid model manifest"):
        Registry(tmp_path, "m").refresh()
