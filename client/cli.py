"""`qi`: the command line of the queue-inference API (Typer + Rich).

    qi submit models/digits/examples          # folders and globs expand; waits for results
    qi submit 'scans/*.png' --out results.jsonl --model digits
    qi submit scans --priority low --cancel-after 1h   # a lane, and a deadline to start by
    qi get ID --wait 30;  qi cancel ID;  qi models;  qi queue

QI_URL and QI_API_KEY (else .run/api-key, as `make run` writes it) say where and who.
"""

import csv
import glob
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from client.errors import APIError, QIError
from client.sync import Client
from shared.schemas import Job, JobStatus, Priority

app = typer.Typer(help="Queue inference: submit images, follow jobs, see models and the queue.",
                  no_args_is_help=True, add_completion=False)
out = Console()
err = Console(stderr=True)
_state: dict[str, Any] = {}
URL = Annotated[str | None, typer.Option("--url", envvar="QI_URL", help="The API (default http://127.0.0.1:8000)")]
KEY = Annotated[str | None, typer.Option("--api-key", envvar="QI_API_KEY", show_default=False,
                                         help="API key (default: .run/api-key when it exists)")]


@app.callback()
def main(url: URL = None, api_key: KEY = None) -> None:
    _state.update(url=url, api_key=api_key)


def _client() -> Client:
    return Client(_state.get("url"), _state.get("api_key"))


def _fail(exc: Exception) -> typer.Exit:
    err.print(f"[red]error:[/red] {exc}")
    return typer.Exit(1)


def expand(paths: list[str]) -> list[Path]:
    """Files named, files in folders named (sorted, not recursive, hidden ones skipped), and
    glob patterns' matches; a name that matches nothing is kept (its read fails, reported)."""
    found: list[Path] = []
    for name in paths:
        matches = sorted(glob.glob(name)) if glob.has_magic(name) else [name]
        for match in map(Path, matches):
            if match.is_dir():
                found.extend(p for p in sorted(match.iterdir()) if p.is_file() and not p.name.startswith("."))
            else:
                found.append(match)
    return found


def row(path: Path | str, result: Job | Exception) -> dict[str, Any]:
    """One output line: the input, and its job's outcome (or why it was refused)."""
    if isinstance(result, Job):
        prediction, error = result.result, result.error
        return {"input": str(path), "id": result.id, "status": result.status.value,
                "label": prediction.label if prediction else None, "score": prediction.score if prediction else None,
                "error": f"{error.code}: {error.message}" if error else None}
    status = result.status if isinstance(result, APIError) else None
    return {"input": str(path), "id": None, "status": "refused" if status else "error", "label": None, "score": None,
            "error": f"{status}: {result.detail}" if isinstance(result, APIError) else str(result)}


COLUMNS = ["input", "id", "status", "label", "score", "error"]


class Writer:
    """Rows as JSON lines (stdout, or a .jsonl file) or CSV (a .csv file)."""

    def __init__(self, path: Path | None):
        self.file = path.open("w", newline="") if path else sys.stdout
        self.csv = csv.DictWriter(self.file, COLUMNS) if path and path.suffix.lower() == ".csv" else None
        if self.csv:
            self.csv.writeheader()

    def write(self, line: dict[str, Any]) -> None:
        if self.csv:
            self.csv.writerow(line)
        else:
            self.file.write(json.dumps(line) + "\n")
        self.file.flush()

    def close(self) -> None:
        if self.file is not sys.stdout:
            self.file.close()


@app.command()
def submit(
    paths: Annotated[list[str], typer.Argument(help="Image files, folders, globs")],
    model: Annotated[str | None, typer.Option(help="'name' or 'name:version' (qi models); default model if absent")]
    = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait for results (default), or only queue")] = True,
    out_path: Annotated[Path | None, typer.Option("--out", help="results.jsonl or results.csv (default: JSON "
                                                  "lines on stdout)")] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Batch requests in flight")] = 16,
    priority: Annotated[Priority | None, typer.Option(
        case_sensitive=False, help="The jobs' lane (default: normal); at most the key's max priority")] = None,
    cancel_after: Annotated[str | None, typer.Option(
        help="A job not started within this (30s, 5m, 1h30m, 250ms, or seconds) fails `expired`; a running "
             "one is not stopped")] = None,
) -> None:
    """Run images through the model: one line per input, a summary of failures, exit 1 if any failed."""
    files = expand(paths)
    if not files:
        raise _fail(QIError("no files"))
    readable: list[Path] = []
    writer = Writer(out_path)
    failures: list[dict[str, Any]] = []
    for path in files:
        if path.is_file():
            readable.append(path)
        else:
            failures.append(row(path, QIError("no such file")))
            writer.write(failures[-1])
    succeeded = 0
    lane = priority.value if priority else None
    try:
        with _client() as qi:
            if wait:
                for path, result in qi.map(readable, model=model, concurrency=concurrency, progress=True,
                                               priority=lane, cancel_after=cancel_after):
                    line = row(path, result)
                    writer.write(line)
                    if line["status"] == JobStatus.succeeded:
                        succeeded += 1
                    else:
                        failures.append(line)
            else:
                for start in range(0, len(readable), 64):
                    chunk = readable[start:start + 64]
                    jobs, errors, batch_ids = qi.submit_batch(chunk, model, priority=lane, cancel_after=cancel_after)
                    for index, path in enumerate(chunk):
                        line = row(path, jobs.get(index) or errors[index])
                        writer.write(line)
                        if index in errors:
                            failures.append(line)
                        else:
                            succeeded += 1
                    for batch_id in batch_ids:
                        err.print(f"batch {batch_id}")
    except (QIError, OSError) as exc:
        raise _fail(exc) from exc
    finally:
        writer.close()
    _summary(succeeded, failures, "queued" if not wait else "succeeded")
    if failures:
        raise typer.Exit(1)


def _summary(succeeded: int, failures: list[dict[str, Any]], verb: str) -> None:
    err.print(f"[green]{succeeded} {verb}[/green], [{'red' if failures else 'green'}]{len(failures)} failed[/]")
    if failures:
        err.print("[bold]Failures[/bold]")
        for line in failures[:50]:
            # One line each, never wrapped: paths stay whole for grep and copy.
            err.print(f"  {line['input']}: {line['status']}: {line['error'] or ''}", soft_wrap=True, markup=False,
                      highlight=False)
        if len(failures) > 50:
            err.print(f"... and {len(failures) - 50} more")


def _print_job(job: Job) -> None:
    out.print_json(job.model_dump_json())


@app.command()
def get(job_id: Annotated[str, typer.Argument(metavar="ID")],
        wait: Annotated[float | None, typer.Option(help="Wait up to S s for the job to end")] = None) -> None:
    """A job (as JSON)."""
    try:
        with _client() as qi:
            _print_job(qi.wait(job_id, wait) if wait else qi.get(job_id))
    except QIError as exc:
        if hasattr(exc, "job"):
            _print_job(exc.job)
            return
        raise _fail(exc) from exc


@app.command()
def cancel(job_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Cancel a queued job."""
    try:
        with _client() as qi:
            _print_job(qi.cancel(job_id))
    except QIError as exc:
        raise _fail(exc) from exc


@app.command()
def models() -> None:
    """The models the API knows, and whether a worker serves each."""
    try:
        with _client() as qi:
            found = qi.models()
    except QIError as exc:
        raise _fail(exc) from exc
    table = Table("model", "version", "input", "labels", "default", "status")
    for m in found:
        colour = "green" if m.status == "serving" else "yellow" if m.status == "unavailable" else "red"
        table.add_row(m.name, m.version, "x".join(map(str, m.input_shape)), str(m.labels), "yes" if m.default else "",
                      f"[{colour}]{m.status}[/]" + (f" ({m.error})" if m.error else ""))
    out.print(table)


@app.command()
def queue() -> None:
    """The backlog (ops port, when reachable: QI_OPS_URL, else port 9000 of a local API) and the workers."""
    try:
        with _client() as qi:
            seen = qi.queue()
    except (QIError, OSError) as exc:
        raise _fail(exc) from exc
    ready, backlog = seen["ready"], seen["backlog"]
    if backlog:
        lanes = ", ".join(f"{lane} {n}" for lane, n in (backlog.get("lanes") or {}).items())
        out.print(f"backlog: {backlog['queued']} queued{f' ({lanes})' if lanes else ''}, {backlog['in_flight']} "
                  f"in flight (from {seen['ops_url']})")
    else:
        where = seen["ops_url"] or "no ops URL: set QI_OPS_URL"
        out.print(f"backlog: not reachable ({where})")
    if "workers" not in ready:  # the public /readyz names them to an admin key only
        out.print("redis: ok; workers: not shown (the ops port, QI_OPS_URL, or an admin key shows them)")
        return
    out.print(f"redis: {ready['redis']}; workers: {ready['workers']}")
    for worker in ready["serving"]:
        failed = ", ".join(f"{name} ({why})" for name, why in worker["failed"].items())
        served = ", ".join(worker["models"]) or "-"
        out.print(f"  {worker['name']}: {served}" + (f"; failed: {failed}" if failed else ""))


if __name__ == "__main__":
    app()
