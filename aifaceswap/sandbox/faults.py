"""The dice behind the sandbox's injected faults (all off unless a FaultConfig turns them on)."""

from __future__ import annotations

import random
import threading

from aifaceswap.sandbox.config import FaultConfig


class FaultDice:
    def __init__(self, config: FaultConfig) -> None:
        self._lock = threading.Lock()
        self.configure(config)

    def configure(self, config: FaultConfig) -> None:
        with self._lock:
            self.config = config
            self._random = random.Random(config.seed)

    def roll(self, rate: float) -> bool:
        """True with probability ``rate`` (never for 0, always for 1)."""
        if rate <= 0:
            return False
        with self._lock:
            return self._random.random() < rate
