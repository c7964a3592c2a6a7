from pathlib import Path

from shared.settings import REPO_ROOT, Settings


def test_env_example_documents_every_setting_and_nothing_else():
    lines = (REPO_ROOT / ".env.example").read_text().splitlines()
    documented = {line.split("=", 1)[0].lower() for line in lines if line and not line.startswith("#")}
    assert documented == set(Settings.model_fields)


def test_env_example_values_are_valid_and_are_the_defaults(monkeypatch):
    for line in (REPO_ROOT / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            key, value = line.split("=", 1)
            monkeypatch.setenv(key, value)
    from_file, defaults = Settings(_env_file=None), Settings.model_construct()
    for name in Settings.model_fields:
        a, b = getattr(from_file, name), getattr(defaults, name)
        if isinstance(a, Path):
            a, b = a.resolve(), b.resolve()
        assert a == b, name
