"""Model folders for tests that need more than the committed digits:1."""

import json
import shutil
from pathlib import Path

from tests.utils.samples import DIGITS


def digits_versions(models: Path, *versions: str, **manifest: object) -> Path:
    """`models`/digits/<v>/ for each version: copies of the committed digits:1 (its manifest
    with `manifest`'s fields changed); `models`."""
    for version in versions:
        folder = models / "digits" / version
        shutil.copytree(DIGITS.directory, folder)
        record = json.loads((folder / "manifest.json").read_text())
        (folder / "manifest.json").write_text(json.dumps({**record, "version": version, **manifest}))
    return models
