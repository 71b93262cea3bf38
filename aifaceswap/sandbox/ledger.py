"""Credit balances of the sandbox's keys, and a ledger of every charge and refund.

The rule for failed jobs: a job that ends with ``success: 0`` is refunded in full, and the ledger
keeps both the charge and the refund.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Literal


class NotEnoughCredits(Exception):
    def __init__(self, balance: int, price: int) -> None:
        super().__init__(f"insufficient credits: this call costs {price} and the balance is {balance}")
        self.balance = balance
        self.price = price


@dataclass(frozen=True)
class LedgerEntry:
    key: str
    operation: str
    points: int
    kind: Literal["charge", "refund"]
    task_id: str | None = None
    at: float = field(default_factory=time.time)


class Ledger:
    """Thread-safe balances and history. Charging checks and debits in one step, so it never overdraws."""

    def __init__(self, balances: dict[str, int]) -> None:
        self._balances = dict(balances)
        self._entries: list[LedgerEntry] = []
        self._lock = threading.Lock()

    def has_key(self, key: str) -> bool:
        return key in self._balances

    def balance(self, key: str) -> int:
        with self._lock:
            return self._balances[key]

    def ensure(self, key: str, price: int) -> None:
        balance = self.balance(key)
        if balance < price:
            raise NotEnoughCredits(balance, price)

    def charge(self, key: str, operation: str, price: int, task_id: str | None = None) -> LedgerEntry:
        with self._lock:
            if self._balances[key] < price:
                raise NotEnoughCredits(self._balances[key], price)
            self._balances[key] -= price
            entry = LedgerEntry(key, operation, price, "charge", task_id)
            self._entries.append(entry)
            return entry

    def refund(self, key: str, task_id: str) -> LedgerEntry | None:
        """Give back what a job was charged (once); None when nothing is owed."""
        with self._lock:
            charged = [e for e in self._entries if e.task_id == task_id and e.key == key]
            if not charged or any(e.kind == "refund" for e in charged):
                return None
            entry = LedgerEntry(key, charged[0].operation, charged[0].points, "refund", task_id)
            self._balances[key] += entry.points
            self._entries.append(entry)
            return entry

    def entries(self, key: str | None = None) -> list[LedgerEntry]:
        with self._lock:
            return [e for e in self._entries if key is None or e.key == key]

    def summary(self, key: str) -> dict[str, object]:
        entries = self.entries(key)
        charged = sum(e.points for e in entries if e.kind == "charge")
        refunded = sum(e.points for e in entries if e.kind == "refund")
        return {
            "balance": self.balance(key),
            "charged": charged,
            "refunded": refunded,
            "spent": charged - refunded,
            "entries": [asdict(e) for e in entries],
        }
