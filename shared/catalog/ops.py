"""Every catalog operation, once, as an `Op` (shared.jobstore.replies): what to send to
Redis and how to read the reply. The faces (shared.catalog.faces) only send them."""

from collections.abc import Callable
from importlib import resources
from typing import NamedTuple, TypeVar

from shared.jobstore.keys import Keyspace
from shared.jobstore.replies import Op

T = TypeVar("T")

SCRIPTS = {path.name.removesuffix(".lua"): path.read_text()
           for path in resources.files("shared.catalog").joinpath("lua").iterdir() if path.name.endswith(".lua")}


class Reading(NamedTuple):
    """The model epoch and the defaults, read together: the defaults as of that epoch."""

    epoch: int
    defaults: dict[str, str]  # model name -> default version, where one is set


def _pairs(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


class CatalogOps:
    """Builds every catalog operation; holds the keyspace, never a connection."""

    def __init__(self, keys: Keyspace):
        self.keys = keys

    def epoch(self) -> Op[int]:
        """The number of changes announced so far (0: none): one GET, cheap to poll."""
        return Op(("GET", self.keys.model_epoch), lambda reply: int(reply or 0))

    def defaults(self) -> Op[dict[str, str]]:
        """Model name -> default version, for the models an admin or a training job set."""
        return Op(("HGETALL", self.keys.model_defaults), dict)

    def loadable(self, key: str) -> Op[bool]:
        """Whether an admin marked version `key` ('name:version') loadable on demand: one
        SISMEMBER, asked only for a job whose version is neither loaded nor the default."""
        return Op(("SISMEMBER", self.keys.model_loadable, key), bool)

    def mark_loadable(self, key: str, loadable: bool) -> Op[bool]:
        """Mark (or unmark) version `key` loadable on demand; whether that changed anything.
        Only admins (api.routes.models), for versions on disk: the set stays as small as
        MODEL_DIR."""
        return Op(("SADD" if loadable else "SREM", self.keys.model_loadable, key), bool)

    def read(self) -> Op[Reading]:
        """The epoch and the defaults as of one moment (see lua/read.lua)."""
        return Op((), lambda reply: Reading(int(reply[0]), _pairs(reply[1])), "read", self._both)

    def announce(self) -> Op[int]:
        """Tell every process that MODEL_DIR or a default changed; the new epoch."""
        return Op((self.keys.models_channel,), int, "announce", (self.keys.model_epoch,))

    def set_default(self, name: str, version: str) -> Op[int]:
        """Make `version` the default of model `name` (a rollback is the same call),
        announced; the new epoch."""
        return self._set(name, version, "always", "", int)

    def pin_default(self, name: str, version: str) -> Op[bool]:
        """Make `version` the default of `name` only if none is set (so that a newer version
        does not take the name by being newest); whether it did. Announced when it did."""
        return self._set(name, version, "unset", "", bool)

    def set_default_if(self, name: str, expected: str | None, version: str) -> Op[bool]:
        """Make `version` the default of `name` if the default is still `expected` (None: none
        set); whether it did. Announced when it did. A compare-and-set (lua/set_default.lua):
        a default changed in between (an admin's POST /models/{name}/default) is never undone."""
        if expected is None:
            return self.pin_default(name, version)
        return self._set(name, version, "is", expected, bool)

    @property
    def _both(self) -> tuple[str, str]:
        return self.keys.model_defaults, self.keys.model_epoch

    def _set(self, name: str, version: str, when: str, expected: str, parse: Callable[[int], T]) -> Op[T]:
        args = (self.keys.models_channel, name, version, when, expected)
        return Op(args, lambda reply: parse(int(reply)), "set_default", self._both)
