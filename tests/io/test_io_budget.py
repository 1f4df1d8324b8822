"""Tests for dasr.io.budget: reservations in ticket order, refusal over the total, close."""

from __future__ import annotations

import threading
import time

import pytest

from dasr.io.budget import DecodeBudget


def _in_thread(fn):
    out = {}
    thread = threading.Thread(target=lambda: out.setdefault("result", fn()), daemon=True)
    thread.start()
    return thread, out


def test_reservations_are_granted_in_ticket_order():
    budget = DecodeBudget(100)
    first, second = budget.ticket(), budget.ticket()
    thread, out = _in_thread(lambda: budget.acquire(second, 10))
    time.sleep(0.2)
    assert thread.is_alive() and budget.free == 100  # the second waits for the first's turn
    assert budget.acquire(first, 60)
    thread.join(5)
    assert out["result"] is True and budget.free == 30


def test_a_reservation_waits_for_room_and_release_gives_it():
    budget = DecodeBudget(100)
    assert budget.acquire(budget.ticket(), 80)
    thread, out = _in_thread(lambda: budget.acquire(budget.ticket(), 30))
    time.sleep(0.2)
    assert thread.is_alive()
    budget.release(80)
    thread.join(5)
    assert out["result"] is True and budget.free == 70


def test_more_than_the_total_is_refused_and_passes_the_turn():
    budget = DecodeBudget(100)
    big, small = budget.ticket(), budget.ticket()
    assert budget.acquire(big, 101) is False and budget.free == 100
    assert budget.acquire(small, 100) is True


def test_a_settled_ticket_passes_the_turn_and_settling_twice_is_harmless():
    budget = DecodeBudget(100)
    failed, used = budget.ticket(), budget.ticket()
    thread, out = _in_thread(lambda: budget.acquire(used, 5))
    budget.settle(failed)  # its decode failed before reserving
    thread.join(5)
    assert out["result"] is True
    budget.settle(used)
    budget.settle(failed)
    assert budget.acquire(budget.ticket(), 95) is True


def test_close_wakes_waiting_decodes():
    budget = DecodeBudget(100)
    assert budget.acquire(budget.ticket(), 100)
    thread, out = _in_thread(lambda: budget.acquire(budget.ticket(), 50))
    time.sleep(0.1)
    budget.close()
    thread.join(5)
    assert out["result"] is False and not thread.is_alive()


@pytest.mark.parametrize("total", [0, -5, 1.5, True])
def test_the_total_must_be_a_positive_int(total):
    with pytest.raises(ValueError, match="positive number of bytes"):
        DecodeBudget(total)
