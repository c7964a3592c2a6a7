"""The library versions the broker seam was written against, checked at import.

shared/broker/patch.py replaces two pieces of kombu's Redis transport and reaches private
attributes; shared/broker/envelopes.py writes kombu's message format by hand. A different
version may still import and then lose or repeat messages quietly, so refuse to start
instead, naming both versions. The pin is in pyproject.toml; tests/shared/test_broker.py
checks kombu's own `_brpop_read` against the copy the patch was made from.
"""

from importlib.metadata import version

WRITTEN_FOR = {"kombu": "5.7.0"}


class IncompatibleLibrary(ImportError):
    pass


def require(package: str) -> None:
    """Raise unless `package` is installed at the version this code was written for."""
    found, expected = version(package), WRITTEN_FOR[package]
    if found != expected:
        raise IncompatibleLibrary(
            f"{package} {found} is installed, but shared/broker was written against {package} {expected}: "
            f"check shared/broker/patch.py and envelopes.py against it, then update WRITTEN_FOR and the pin"
        )
