"""Model changes announced through Redis, so every API process and worker sees them.

The versions themselves are folders under MODEL_DIR (shared.registry reads them); what
Redis adds (the names are the job store's `Keyspace`'s):

- `models:defaults`, a hash: model name -> its default version, set by an admin
  (POST /models/{name}/default) or by a training job that activates its version. A model
  with no entry defaults to its newest version.
- `models:epoch`, a counter bumped by every change (a version added or removed, a default
  set): a process that sees a new epoch re-reads MODEL_DIR and the defaults. Reading it is
  one GET, cheap enough to poll every second or two.
- `models:changed`, a pub/sub channel carrying the new epoch, for processes that would
  rather be told than poll (a missed message is caught by the next poll).

Who follows: every worker (worker.inference.versions, a thread) and every API process
(api.versions, on its event loop), both over the one core in shared.catalog.follower.
Whoever first finds the folder set changed on a scan announces it.

    ops.py       every catalog operation once, as an Op; each change is one Lua script (lua/)
    faces.py     the synchronous and asynchronous faces that send them
    follower.py  the version follower the API and the workers share

TensorFlow-free: the API, the workers and the training worker all use it.
"""

from shared.catalog.faces import AsyncCatalog, Catalog
from shared.catalog.follower import Follower, Reread
from shared.catalog.ops import CatalogOps, Reading

__all__ = ["AsyncCatalog", "Catalog", "CatalogOps", "Follower", "Reading", "Reread"]
