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
