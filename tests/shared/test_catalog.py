"""Model defaults in Redis: a training job's compare-and-set never undoes a default an admin
set meanwhile; a pin only fills an empty default; each change bumps the epoch."""

from shared import catalog


def test_set_default_if_changes_only_what_it_read(redis_server):
    client = redis_server.client()
    client.delete(catalog.DEFAULTS_KEY)
    epoch = catalog.epoch(client)
    assert catalog.set_default_if(client, "digits", expected=None, version="2")
    assert catalog.defaults(client)["digits"] == "2"
    assert catalog.epoch(client) == epoch + 1
    catalog.set_default(client, "digits", "1")  # an admin, while a job trained
    assert not catalog.set_default_if(client, "digits", expected="2", version="3")
    assert catalog.defaults(client)["digits"] == "1"


def test_pin_fills_only_an_empty_default(redis_server):
    client = redis_server.client()
    client.delete(catalog.DEFAULTS_KEY)
    assert catalog.pin_default(client, "iris", "1")
    assert not catalog.pin_default(client, "iris", "2")
    assert catalog.defaults(client) == {"iris": "1"}
