"""The queue-management library: budgets, confirmation, and a log that changes
while a person is asked."""

from __future__ import annotations

import pytest

import reprocessor
from eventlog import Event, EventLog, LogBusyError, LogWriter, enqueue_items, new_record
from reprocessor import ManageError, ManageResult, discard_items, requeue_items
from tests.replaying import enqueue, history, log_files, query


def test_requeue_records_only_the_attempts_that_cost_budget(log: EventLog) -> None:
    enqueue(log, {"item_id": "img-1"})
    with LogWriter(log) as writer:
        writer.append(
            [
                Event(type="attempt_started", item_id="img-1", run_id="r", attempt=1),
                Event(type="attempt_interrupted", item_id="img-1", run_id="r",
                      attempt=1),
                Event(type="attempt_started", item_id="img-1", run_id="r", attempt=2),
                Event(type="attempt_failed", item_id="img-1", run_id="r", attempt=2),
                Event(type="item_quarantined", item_id="img-1", run_id="r"),
            ]
        )  # fmt: skip

    result = requeue_items(log, item_ids=["img-1"])

    assert result == ManageResult("requeue", 1, ("img-1",), written=True)
    item, events = history(log, "img-1")
    assert (item["status"], item["attempts"], item["budget_used"]) == ("pending", 2, 0)
    assert (events[-1]["type"], events[-1]["attempt"]) == ("item_requeued", 1)


def test_a_refused_confirmation_writes_nothing(log: EventLog) -> None:
    enqueue(log, *({"item_id": f"i{n}"} for n in range(3)))
    before = log_files(log)
    asked: list[ManageResult] = []

    def refuse(result: ManageResult) -> bool:
        asked.append(result)
        return False

    result = discard_items(log, where="item_id <> 'i1'", reason="r", confirm=refuse)

    assert asked == [ManageResult("discard", 2, ("i0", "i2"))]
    assert result == asked[0]
    assert not result.written
    assert log_files(log) == before


def test_items_that_change_while_the_person_is_asked_are_not_written(
    log: EventLog,
) -> None:
    enqueue(log, {"item_id": "i0", "job_id": "nightly"})

    def meanwhile_another_item_joins(result: ManageResult) -> bool:
        record = new_record("i1", job_id="nightly")
        enqueue_items(log, [record])
        return True

    with pytest.raises(ManageError) as caught:
        discard_items(
            log,
            where="job_id = 'nightly'",
            reason="r",
            confirm=meanwhile_another_item_joins,
        )

    assert str(caught.value) == (
        "the selected items changed while you were asked; nothing was written: "
        "run the command again"
    )
    assert query(log, "SELECT count(*) AS n FROM events WHERE type = 'item_discarded'")[
        0
    ] == {"n": 0}


def test_a_log_that_changed_elsewhere_while_asked_is_read_again_and_written(
    log: EventLog,
) -> None:
    enqueue(log, {"item_id": "i0", "job_id": "nightly"})

    def meanwhile_another_job_fails(result: ManageResult) -> bool:
        enqueue_items(log, [new_record("other", job_id="hourly")])
        return True

    result = discard_items(
        log, where="job_id = 'nightly'", reason="r", confirm=meanwhile_another_job_fails
    )

    assert result.written
    statuses = query(log, "SELECT item_id, status FROM items ORDER BY item_id")
    assert statuses == [
        {"item_id": "i0", "status": "discarded"},
        {"item_id": "other", "status": "pending"},
    ]


def test_a_held_replay_lock_refuses_before_anything_is_read_or_written(
    log: EventLog,
) -> None:
    enqueue(log, {"item_id": "i0"})
    with log.exclusive("replay"):
        before = log_files(log)
        with pytest.raises(LogBusyError):
            discard_items(log, item_ids=["i0"], reason="r")
        with pytest.raises(LogBusyError):
            reprocessor.amend_item(log, "i0", assignments=["x=1"])
        dry_run = discard_items(log, item_ids=["i0"], reason="r", dry_run=True)
        assert log_files(log) == before
    assert dry_run == ManageResult("discard", 1, ("i0",), dry_run=True)


def test_check_free_creates_no_lock_file_and_refuses_a_held_lock(
    log: EventLog,
) -> None:
    log.check_free("replay")
    assert list((log.path / "locks").iterdir()) == []

    with log.exclusive("replay"), pytest.raises(LogBusyError) as caught:
        log.check_free("replay")

    assert str(caught.value).startswith(
        f"another `replay` is already running on {log.path}"
    )
    log.check_free("replay")  # let go when the replay ended


def test_a_log_may_be_given_as_a_path(log: EventLog) -> None:
    enqueue(log, {"item_id": "i0"})

    result = discard_items(str(log.path), item_ids=["i0", "i0"], reason="r")

    assert result == ManageResult("discard", 1, ("i0",), written=True)


def test_the_errors_form_one_tree_under_replay_error() -> None:
    assert issubclass(reprocessor.ManageUsageError, reprocessor.ManageError)
    assert issubclass(reprocessor.ManageError, reprocessor.ReplayError)
    assert not issubclass(reprocessor.ManageError, reprocessor.ReplayUsageError)


def test_every_public_name_is_exported_sorted_and_documented() -> None:
    assert reprocessor.__all__ == sorted(reprocessor.__all__)
    public = {name for name in vars(reprocessor) if not name.startswith("_")}
    assert public == set(reprocessor.__all__)
    for name in ("discard_items", "requeue_items", "amend_item", "ManageResult"):
        assert name in reprocessor.__all__
        assert getattr(reprocessor, name).__doc__, name
