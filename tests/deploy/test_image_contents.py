"""What each image imports at run time is in it: the defect class `make compose-check` found
(the training worker imported `models.train_images`, which neither the package nor the worker
image held). Read from the code, the Dockerfiles and pyproject.toml; no engine needed."""

import ast
import json
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from shared.settings import REPO_ROOT

FIRST_PARTY = {"api", "worker", "shared", "client", "models"}
# Dev tooling, run from the repository only: make run's supervisor and the tests' and
# benchmarks' process handles (devstack/), and where they lived before, inside shared/.
DEV_ONLY = "devstack"
FORMER_DEV_FILES = ["shared/processes.py", "shared/stack.py"]
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
# Each image: the Dockerfile, the extras its pip line installs, the source folders it runs.
IMAGES = {
    "Dockerfile.api": (["api"], ["api", "shared"]),
    "Dockerfile.worker": (["worker", "cpu"], ["worker", "shared", "models"]),
}


def imports(path: Path) -> set[str]:
    """Top-level names of every module a file imports, at module level or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def sources(folder: str) -> list[Path]:
    root = REPO_ROOT / folder
    return sorted(root.glob("*.py")) if folder == "models" else sorted(root.rglob("*.py"))


def copied(dockerfile: str) -> set[str]:
    """Top-level folders the build stage copies into the source tree it pip-installs."""
    text = (REPO_ROOT / dockerfile).read_text().split("\nFROM ")[1]  # the first stage
    return {m.group(1) for m in re.finditer(r"^COPY (?:--\S+ )*(\w+)[/\w.*]* \./", text, re.M)}


def closure(extras: list[str]) -> set[str]:
    """Distributions queue-inference[extras] installs (normalised names), from installed metadata."""
    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    # The project's own requirements from pyproject.toml (installed metadata may be stale).
    project = PYPROJECT["project"]
    wanted = [Requirement(raw) for raw in project["dependencies"]]
    wanted += [Requirement(raw) for extra in extras for raw in project["optional-dependencies"][extra]]
    seen: set[str] = set()
    while wanted:
        req = wanted.pop()
        name = norm(req.name)
        key = name + str(sorted(req.extras))
        if key in seen or name == "queue-inference":
            continue
        seen.add(key)
        for raw in metadata.requires(req.name) or []:
            dep = Requirement(raw)
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in (req.extras or {""})):
                wanted.append(dep)
    return {key.split("[")[0] for key in seen}


def test_the_package_holds_every_first_party_module_the_code_imports():
    included = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    used = set().union(*(imports(path) for folder in FIRST_PARTY for path in sources(folder))) & FIRST_PARTY
    missing = {name for name in used if not any(re.fullmatch(p.replace("*", ".*"), name) for p in included)}
    assert not missing, f"imported but not packaged (pyproject.toml packages.find.include): {missing}"


@pytest.mark.parametrize("dockerfile", list(IMAGES))
def test_each_image_copies_what_its_code_imports(dockerfile):
    _, folders = IMAGES[dockerfile]
    in_image = copied(dockerfile)
    assert set(folders) <= in_image, f"{dockerfile} does not copy {set(folders) - in_image}"
    used = set().union(*(imports(path) for folder in folders for path in sources(folder))) & FIRST_PARTY
    assert used <= in_image, f"{dockerfile}: imported but not copied: {used - in_image}"


@pytest.mark.parametrize("dockerfile", list(IMAGES))
def test_no_image_holds_the_dev_tooling(dockerfile):
    """devstack is neither copied, nor packaged, nor imported by what the image runs; and the
    folders the image copies whole hold none of it."""
    stage = (REPO_ROOT / dockerfile).read_text().split("\nFROM ")[1]
    assert DEV_ONLY not in copied(dockerfile)
    # Each COPY names its folders: a `COPY . .` would take devstack along.
    assert not re.search(r"^COPY (?:--\S+ )*\.\S* ", stage, re.M), dockerfile
    assert DEV_ONLY not in stage
    included = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    assert not any(re.fullmatch(p.replace("*", ".*"), DEV_ONLY) for p in included)
    _, folders = IMAGES[dockerfile]
    runtime = set().union(*(imports(path) for folder in folders for path in sources(folder)))
    assert DEV_ONLY not in runtime, f"{dockerfile}: its code imports {DEV_ONLY}"
    for path in FORMER_DEV_FILES:  # shared/ is copied whole
        assert not (REPO_ROOT / path).exists(), f"{dockerfile} would copy {path}"


def test_every_manifest_train_module_is_in_the_worker_image():
    assert "models" in copied("Dockerfile.worker")
    for manifest in REPO_ROOT.glob("models/*/*/manifest.json"):
        train = json.loads(manifest.read_text()).get("train")
        if train:
            assert train.startswith("models."), train
            assert (REPO_ROOT / (train.replace(".", "/") + ".py")).is_file(), train


@pytest.mark.parametrize("dockerfile", list(IMAGES))
def test_every_third_party_import_is_installed_by_the_image(dockerfile):
    extras, folders = IMAGES[dockerfile]
    installed = closure(extras)
    providers = metadata.packages_distributions()
    used = set().union(*(imports(path) for folder in folders for path in sources(folder)))
    third = used - FIRST_PARTY - set(sys.stdlib_module_names) - {"__future__"}
    missing = {}
    for name in sorted(third):
        dists = {re.sub(r"[-_.]+", "-", d).lower() for d in providers.get(name, [])}
        if not dists & installed:
            missing[name] = sorted(dists)
    assert not missing, f"{dockerfile}: imported but not installed by .[{','.join(extras)}]: {missing}"

