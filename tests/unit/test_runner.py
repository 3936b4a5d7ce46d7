"""The worker's loop: how often it turns to its chores while step contacts flow."""

from __future__ import annotations

import threading
from typing import cast

import pytest

from touchline.worker import runner
from touchline.worker.loop import Worker
from touchline.worker.summary import PassSummary


class Recorder:
    """Stands in for the Worker: `busy_batches` full batches, then an idle engine."""

    def __init__(self, busy_batches: int, turns: int, stop: threading.Event) -> None:
        self.busy_batches = busy_batches
        self.turns = turns
        self.stop = stop
        self.calls: list[str] = []
        # No sends in flight: each turn's outcome is all there is.
        self.sending = 0

    def run_job(self) -> bool:
        self.calls.append("job")
        return False

    def expire_runs(self) -> int:
        return 0

    def fire_timers(self) -> int:
        return 0

    def run_batch(self) -> PassSummary:
        batches = self.calls.count("batch")
        self.calls.append("batch")
        if batches + 1 >= self.turns:
            self.stop.set()
        return PassSummary(sent=100 if batches < self.busy_batches else 0)


def test_chores_wait_while_step_contacts_flow_and_run_every_poll_when_idle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runner, "CHORES_SECONDS", 3600.0)
    stop = threading.Event()
    worker = Recorder(busy_batches=50, turns=55, stop=stop)

    runner.run_until_stopped(cast(Worker, worker), stop, poll_seconds=0.0)

    # Once before the first batch, then not again until the batches run dry; from then on
    # before every batch.
    jobs_before = [
        worker.calls[:i].count("job") for i, c in enumerate(worker.calls) if c == "batch"
    ]
    assert jobs_before[:51] == [1] * 51
    assert jobs_before[51:] == [2, 3, 4, 5]


def test_chores_with_work_left_run_again_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "CHORES_SECONDS", 3600.0)
    stop = threading.Event()
    worker = Recorder(busy_batches=10, turns=6, stop=stop)
    queued = iter([True, True, True])

    def run_job() -> bool:
        worker.calls.append("job")
        return next(queued, False)

    monkeypatch.setattr(worker, "run_job", run_job)
    runner.run_until_stopped(cast(Worker, worker), stop, poll_seconds=0.0)

    # Three queued jobs, one per turn beside the batches, then the wait.
    assert worker.calls[:9] == ["job", "batch"] * 4 + ["batch"]
