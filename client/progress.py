"""A progress bar on stderr (Rich, when installed; nothing otherwise)."""

from typing import Any


class Bar:
    """Counts finished inputs, and failures, with rate and ETA."""

    def __init__(self, total: int | None, enabled: bool = True, description: str = "jobs"):
        self.total, self.failed = total, 0
        self._progress: Any = None
        self._task: Any = None
        if not enabled:
            return
        try:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
        except ImportError:
            return
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[rate]}"),
                                  TextColumn("[red]{task.fields[failed]} failed"), TimeElapsedColumn(),
                                  TextColumn("ETA"), TimeRemainingColumn(), console=Console(stderr=True))
        self._description = description

    def __enter__(self) -> "Bar":
        if self._progress is not None:
            self._progress.start()
            self._task = self._progress.add_task(self._description, total=self.total, failed=0, rate="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def advance(self, result: Any) -> None:
        from shared.schemas import Job, JobStatus

        if not (isinstance(result, Job) and result.status == JobStatus.succeeded):
            self.failed += 1
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task)
            task = self._progress.tasks[0]
            rate = f"{task.speed:.1f}/s" if task.speed else ""
            self._progress.update(self._task, failed=self.failed, rate=rate)
