"""The budget guard: refuse, before anything is spent, work whose estimate exceeds ``max_credits``."""

from __future__ import annotations

from faceswap_flows.flows.exceptions import BudgetExceeded


def check_budget(estimate: int, max_credits: int | None, *, spent: int = 0) -> None:
    if max_credits is not None and spent + estimate > max_credits:
        raise BudgetExceeded(
            f"max_credits: this needs {estimate} credits (after {spent} already spent) but the budget is "
            f"{max_credits}: raise max_credits or submit less"
        )
