"""The dice behind the sandbox's injected faults (all off unless a FaultConfig turns them on)."""

from __future__ import annotations

import random
import threading

from faceswap_flows.aifaceswap.sandbox.config import FaultConfig


class FaultDice:
    def __init__(self, config: FaultConfig) -> None:
        self._lock = threading.Lock()
        self.configure(config)

    def configure(self, config: FaultConfig) -> None:
        with self._lock:
            self.config = config
            self._random = random.Random(config.seed)
            self._bursts = {"server_error": config.server_error_burst, "rate_limit": config.rate_limit_burst}

    def burst(self, kind: str) -> bool:
        """True while a burst of ``kind`` ("server_error" or "rate_limit") still has calls to spoil."""
        with self._lock:
            if self._bursts[kind] <= 0:
                return False
            self._bursts[kind] -= 1
            return True

    def roll(self, rate: float) -> bool:
        """True with probability ``rate`` (never for 0, always for 1)."""
        if rate <= 0:
            return False
        with self._lock:
            return self._random.random() < rate
