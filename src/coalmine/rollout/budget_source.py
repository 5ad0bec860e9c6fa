"""Where the runner gets a service's error budget: the SLO engine on the state database's
buckets (:class:`SloBudgetSource`). I/O lives here; the verdict is in ``rollout.budget``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from coalmine.errors import CoalmineError
from coalmine.rollout.budget import BudgetObservation, observe
from coalmine.slo.engine import SloResult
from coalmine.slo.evaluate import SloEvaluator
from coalmine.slo.spec import Slo

log = logging.getLogger("coalmine.controller")


class BudgetSource(Protocol):
    refresh_s: float

    async def observe(self, slos: Sequence[Slo], now: float) -> BudgetObservation:
        """Evaluate ``slos`` at ``now``; never raises (failures are in the observation)."""
        ...


class SloBudgetSource:
    """Collect each SLO's new events into buckets (``collect``), then run the engine.

    ``refresh_s``: the runner evaluates a rollout's SLOs at most this often. ``timeout_s``
    bounds one SLO's evaluation, so a slow Prometheus never holds the controller up."""

    def __init__(
        self,
        evaluator: SloEvaluator,
        *,
        refresh_s: float = 10.0,
        timeout_s: float = 10.0,
        collect: bool = True,
    ) -> None:
        self.evaluator = evaluator
        self.refresh_s = refresh_s
        self.timeout_s = timeout_s
        self.collect = collect

    async def _one(self, slo: Slo, now: float) -> SloResult:
        if self.collect:
            return await self.evaluator.refresh(slo, now)
        return self.evaluator.evaluate(slo, now)

    async def observe(self, slos: Sequence[Slo], now: float) -> BudgetObservation:
        outcomes: list[tuple[Slo, SloResult | str]] = []
        for slo in slos:
            try:
                result = await asyncio.wait_for(self._one(slo, now), self.timeout_s)
            except TimeoutError:
                outcomes.append((slo, f"the evaluation took longer than {self.timeout_s:g}s"))
            except CoalmineError as err:
                outcomes.append((slo, err.one_line()))
            except Exception as err:  # an engine or collector bug must not stop the controller
                log.exception("evaluating SLO %s failed", slo.name)
                # the type only: an arbitrary message could carry a URL with a token
                outcomes.append((slo, f"the evaluation failed ({type(err).__name__})"))
            else:
                outcomes.append((slo, result))
        return observe(now, outcomes)
