"""API key management, against the service's Redis (REDIS_URL):

    python -m api.keys create NAME [--rate-limit N/minute] [--max-queued N] [--max-records N]
                                   [--admin] [--weight N] [--max-priority high|normal|low]
                                   [--read-rate N/minute]
    python -m api.keys set NAME [--weight N] [--max-priority P] [--rate-limit R] [--max-queued N]
                                [--read-rate R] [--max-records N]
    python -m api.keys list
    python -m api.keys revoke NAME
    python -m api.keys rotate-webhook-secret NAME

`create` prints the key once (only its SHA-256 is stored); `list` never prints keys.
`--weight` (1..100, default 1) is the key's fair share of the workers against the other
keys with jobs waiting; `--max-priority` (default normal) the highest lane its jobs may ask
for (admin keys: any); `--read-rate` its job reads (GET /jobs, /jobs/{id}, /batches/{id})
per minute (default READ_RATE_LIMIT_PER_MINUTE); `--max-records` the records it may make
Redis hold (its record budget: jobs until their records expire, a queued job's
Idempotency-Key, batches). `set` changes a key's limits in place (the API sees them within a
second; the queue reads a new weight at once).
"""

import re
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from shared.apikeys import MAX_WEIGHT
from shared.jobstore import Keyspace
from shared.keystore import KeyStore
from shared.redisconn import sync_client, target
from shared.schemas import Priority
from shared.settings import get_settings

cli = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True, add_completion=False)
console = Console()
_RATE = re.compile(r"^\s*(\d+)\s*(?:/\s*(second|minute|hour)s?)?\s*$")
_PER_MINUTE = {"second": 60.0, "minute": 1.0, "hour": 1 / 60}
RateOption = Annotated[str | None, typer.Option(help="Submissions per minute, e.g. 600/minute "
                                                     "(default: RATE_LIMIT_PER_MINUTE)")]
ReadRateOption = Annotated[str | None, typer.Option(help="Job reads per minute, e.g. 6000/minute "
                                                         "(default: READ_RATE_LIMIT_PER_MINUTE)")]
MaxQueuedOption = Annotated[int | None, typer.Option(min=0, help="Queued + running jobs at most "
                                                                 "(default: MAX_QUEUED_JOBS_PER_KEY; 0: none)")]
MaxRecordsOption = Annotated[int | None, typer.Option(min=0, help=(
    "Records it may make Redis hold: jobs until their records expire, Idempotency-Keys, batches "
    "(default: MAX_RECORDS_PER_KEY; 0: none)"))]
WeightOption = Annotated[int | None, typer.Option(min=1, max=MAX_WEIGHT, help=(
    f"Fair-share weight against the other keys with jobs waiting, 1..{MAX_WEIGHT} (default 1)"))]
MaxPriorityOption = Annotated[Priority | None, typer.Option(
    case_sensitive=False, help="The highest priority its jobs may ask for (default normal; admin keys: any)")]


def per_minute(value: str) -> int:
    """'600/minute', '10/second', '3600/hour' or '600' as submissions per minute."""
    match = _RATE.match(value)
    if not match:
        raise typer.BadParameter("expected N/minute (or N/second, N/hour)")
    rate = int(match.group(1)) * _PER_MINUTE[match.group(2) or "minute"]
    if rate < 1:
        raise typer.BadParameter("at least 1 per minute")
    return int(rate)


def store() -> KeyStore:
    settings = get_settings()
    client = sync_client(target(settings), decode_responses=True, socket_timeout=settings.redis_timeout_seconds)
    return KeyStore(client, Keyspace())


def _when(stamp: float | None) -> str:
    return datetime.fromtimestamp(stamp, tz=UTC).strftime("%Y-%m-%d %H:%M:%S") if stamp else "never"


@cli.command()
def create(
    name: str,
    rate_limit: RateOption = None,
    max_queued: MaxQueuedOption = None,
    admin: Annotated[bool, typer.Option(help="May list every key's jobs (GET /jobs?owner=all), use any priority")]
    = False,
    weight: WeightOption = None,
    max_priority: MaxPriorityOption = None,
    read_rate: ReadRateOption = None,
    max_records: MaxRecordsOption = None,
) -> None:
    """Create a key and print it (once: it is not stored)."""
    try:
        _, key = store().create(name, rate_limit=per_minute(rate_limit) if rate_limit else None,
                                max_queued=max_queued, admin=admin, weight=weight, max_priority=max_priority,
                                read_rate_limit=per_minute(read_rate) if read_rate else None,
                                max_records=max_records)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="NAME") from None
    typer.echo(key)


@cli.command("set")
def set_limits(
    name: str,
    weight: WeightOption = None,
    max_priority: MaxPriorityOption = None,
    rate_limit: RateOption = None,
    max_queued: MaxQueuedOption = None,
    read_rate: ReadRateOption = None,
    max_records: MaxRecordsOption = None,
) -> None:
    """Change a key's weight, highest priority or limits; those not given stay."""
    if all(value is None for value in (weight, max_priority, rate_limit, max_queued, read_rate, max_records)):
        raise typer.BadParameter("give at least one of --weight, --max-priority, --rate-limit, --max-queued, "
                                 "--read-rate, --max-records")
    try:
        key = store().set(name, weight=weight, max_priority=max_priority,
                          rate_limit=per_minute(rate_limit) if rate_limit else None, max_queued=max_queued,
                          read_rate_limit=per_minute(read_rate) if read_rate else None, max_records=max_records)
    except KeyError:
        raise typer.BadParameter(f"no key named {name!r}", param_hint="NAME") from None
    typer.echo(f"{name}: weight {key.weight}, max priority {key.max_priority.value}, rate/min "
               f"{'default' if key.rate_limit is None else key.rate_limit}, max queued "
               f"{'default' if key.max_queued is None else key.max_queued}, reads/min "
               f"{'default' if key.read_rate_limit is None else key.read_rate_limit}, max records "
               f"{'default' if key.max_records is None else key.max_records}")


@cli.command("list")
def list_keys() -> None:
    """Every key's name, id, limits and use (never the keys themselves)."""
    table = Table("name", "id", "created", "last used", "rate/min", "reads/min", "max queued", "max records", "weight",
                  "max priority", "admin")
    for key in store().list():
        table.add_row(key.name, key.id, _when(key.created_at), _when(key.last_used_at),
                      "default" if key.rate_limit is None else str(key.rate_limit),
                      "default" if key.read_rate_limit is None else str(key.read_rate_limit),
                      "default" if key.max_queued is None else str(key.max_queued),
                      "default" if key.max_records is None else str(key.max_records), str(key.weight),
                      "any" if key.admin else key.max_priority.value, "yes" if key.admin else "")
    console.print(table)


@cli.command()
def revoke(name: str) -> None:
    """Revoke a key at once: its next request gets 401."""
    if not store().revoke(name):
        raise typer.BadParameter(f"no key named {name!r}", param_hint="NAME")
    typer.echo(f"revoked {name}")


@cli.command("rotate-webhook-secret")
def rotate_webhook_secret(name: str) -> None:
    """A new webhook secret for the key; the previous one keeps signing for 24 h."""
    try:
        key = store().rotate_webhook_secret(name)
    except KeyError:
        raise typer.BadParameter(f"no key named {name!r}", param_hint="NAME") from None
    typer.echo(f"{name}: new webhook secret {key.webhook_secret} (the previous one also signs until "
               f"{_when(key.previous_until)} UTC)")


if __name__ == "__main__":
    cli()
