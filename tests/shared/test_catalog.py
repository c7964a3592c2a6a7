"""Model defaults in Redis: a training job's compare-and-set never undoes a default an admin
set meanwhile; a pin only fills an empty default; each change bumps the epoch."""

from shared.catalog import Catalog


def test_set_default_if_changes_only_what_it_read(redis_server):
    client = redis_server.client()
    catalog = Catalog(client)
    client.delete(catalog.ops.keys.model_defaults)
    epoch = catalog.epoch()
    assert catalog.set_default_if("digits", expected=None, version="2")
    assert catalog.defaults()["digits"] == "2"
    assert catalog.epoch() == epoch + 1
    catalog.set_default("digits", "1")  # an admin, while a job trained
    assert not catalog.set_default_if("digits", expected="2", version="3")
    assert catalog.defaults()["digits"] == "1"


def test_pin_fills_only_an_empty_default(redis_server):
    client = redis_server.client()
    catalog = Catalog(client)
    client.delete(catalog.ops.keys.model_defaults)
    assert catalog.pin_default("iris", "1")
    assert not catalog.pin_default("iris", "2")
    assert catalog.defaults() == {"iris": "1"}
