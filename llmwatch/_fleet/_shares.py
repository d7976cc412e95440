"""Leases: this process's slices of the fleet's budgets, and the in-memory check the hot path reads.

A shared budget's window lives in the store as two integers of picodollars: ``allocated`` (leases
handed to processes, spent or not) and ``spent`` (settled spend, for people). Each process holds a
:class:`Share` per scope and window: what the store granted it so far (``granted``) against what it
spent locally (its budget window's ``spent_pico``). The check before a call reads only these:

- a lease left (``granted > spent``): the call goes ahead;
- no lease left and the fleet had nothing more to grant at the last sync (``exhausted``): refused;
- no lease left but the fleet has budget: the call goes ahead while the worker refills the lease
  (woken once less than half of it is left), up to one more lease of overdraft, which the next sync
  covers (counted in ``allocated`` whatever the limit); past that the call is refused until the
  refill lands: a lease too small for the spend rate shows as ``lease_waits`` in ``stats()``;
- the store unreachable: ``store_failure="closed"`` refuses every call under a shared budget;
  ``"open"`` keeps enforcing from the last known state, as if this process were the only one
  spending since (``allocated`` then + this process's spend past its lease, against the limit).

So the fleet spends at most the limit plus, per process, one lease and the calls in flight; during
a store outage in ``"open"`` mode each process may spend what was left at the last sync. Nothing
here does I/O or takes a lock: the worker (``_worker``) does the syncing.
"""

from __future__ import annotations

import time
from typing import Any, Final, Protocol

from llmwatch._health import Counter

PICO: Final = 1_000_000_000_000
DEFAULT_LEASE_FRACTION: Final = 0.01  # lease_usd unset: 1 % of each limit
REFILL_BELOW: Final = 0.5  # a lease is topped up once less than half of it is left
LEASE_WAITS: Final = Counter()  # calls refused while a refill was on its way (stats()["store"])


class Spending(Protocol):
    """What a share reads of its budget window: the local spend in picodollars."""

    spent_pico: int


class Share:
    """One process's slice of one shared budget window (a scope key and the window's end)."""

    __slots__ = (
        "allocated",
        "exhausted",
        "fleet_spent",
        "granted",
        "lease_pico",
        "limit_pico",
        "name",
        "reported",
        "resets_at",
        "window",
    )

    def __init__(self, name: str, window: Spending, resets_at: float, limit_pico: int, lease_pico: int) -> None:
        self.name = name  # "{scope}/{per}": the store key's scope part, and the stats() key
        self.window = window
        self.resets_at = resets_at
        self.limit_pico = limit_pico
        self.lease_pico = max(lease_pico, 1)
        self.granted = window.spent_pico  # spend before the share existed was never leased: not ours to report
        self.reported = window.spent_pico
        self.exhausted = False
        self.allocated = 0  # the fleet's, at the last sync
        self.fleet_spent = 0  # the fleet's settled spend, at the last sync

    # --- the hot path ------------------------------------------------------------------------------
    def refuses(self, spent: int, store_down: bool, fail_closed: bool) -> bool:
        """Whether a call under this budget is refused now (in-memory reads only)."""
        if store_down:
            if fail_closed:
                return True
            return self.allocated + max(spent - self.granted, 0) >= self.limit_pico
        if spent < self.granted:
            return False
        if self.exhausted:
            return True
        if spent >= self.granted + self.lease_pico:  # a refill is late: the lease is too small for the rate
            LEASE_WAITS.add()
            return True
        return False

    def low(self, spent: int) -> bool:
        """Less than half a lease left: the worker should refill now."""
        return self.granted - spent < self.lease_pico * REFILL_BELOW

    # --- the worker ---------------------------------------------------------------------------------
    def request(self) -> SyncRequest | None:
        """What the next sync should send: spend to report, an overdraft to cover, a lease to take;
        None when there is nothing to do."""
        spent = self.window.spent_pico
        held = self.granted - spent
        cover = max(-held, 0)
        want = 0
        if held < self.lease_pico * REFILL_BELOW and time.time() < self.resets_at:  # an ended window: report only
            want = self.lease_pico - max(held, 0)
        report = spent - self.reported
        if not (want or cover or report):
            return None
        return SyncRequest(self, report, cover, want)

    def settled(self, request: SyncRequest, grant: int, allocated: int, fleet_spent: int) -> None:
        """Apply the store's answer to ``request``."""
        self.reported += request.report
        self.granted += request.cover + grant
        self.allocated = allocated
        self.fleet_spent = fleet_spent
        self.exhausted = allocated >= self.limit_pico

    def give_back(self) -> int:
        """The unused lease, taken off this share (shutdown): the worker returns it to the store."""
        unused = max(self.granted - self.window.spent_pico, 0)
        self.granted -= unused
        return unused

    def forget_parent(self) -> None:
        """In a forked child: the parent's lease and reported spend are the parent's."""
        spent = self.window.spent_pico
        self.granted = spent
        self.reported = spent

    def update_limit(self, limit_pico: int, lease_pico: int) -> None:
        self.limit_pico = limit_pico
        self.lease_pico = max(lease_pico, 1)
        self.exhausted = self.allocated >= limit_pico

    def state(self) -> dict[str, Any]:
        spent = self.window.spent_pico
        return {
            "held_usd": max(self.granted - spent, 0) / PICO,
            "granted_usd": self.granted / PICO,
            "unreported_usd": (spent - self.reported) / PICO,
            "fleet_spent_usd": self.fleet_spent / PICO,
            "fleet_allocated_usd": self.allocated / PICO,
            "exhausted": self.exhausted,
        }


class SyncRequest:
    """One share's part of a sync: ``report`` spend, ``cover`` an overdraft, take up to ``want``."""

    __slots__ = ("cover", "report", "share", "want")

    def __init__(self, share: Share, report: int, cover: int, want: int) -> None:
        self.share = share
        self.report = report
        self.cover = cover
        self.want = want

    @classmethod
    def report_only(cls, share: Share) -> SyncRequest:
        """Report the spend and take nothing (shutdown)."""
        return cls(share, share.window.spent_pico - share.reported, 0, 0)


def lease_for(limit_pico: int, lease_usd: float | None) -> int:
    """The lease size of a budget: ``lease_usd`` when set, else 1 % of the limit (never above it)."""
    if lease_usd is None:
        return max(int(limit_pico * DEFAULT_LEASE_FRACTION), 1)
    return max(min(round(lease_usd * PICO), limit_pico), 1)
