"""Errors a user can cause. The CLI prints them on one line and exits with code 2."""

from __future__ import annotations


class CoalmineError(Exception):
    """A problem with the user's input or environment, never a bug.

    ``file``/``line`` locate the problem, ``field`` names the offending field as a dotted path
    (``spec.strategy.canary.steps[2].setWeight``) and ``hint`` says what to do about it.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.field = field
        self.hint = hint

    def one_line(self) -> str:
        """``file:line: field: message (hint: ...)`` with the parts that are known."""
        where = ""
        if self.file:
            where = self.file + (f":{self.line}" if self.line else "") + ": "
        field = f"{self.field}: " if self.field else ""
        hint = f" (hint: {self.hint})" if self.hint else ""
        return f"{where}{field}{self.message}{hint}".replace("\n", " ")

    def __str__(self) -> str:
        return self.one_line()


class SpecError(CoalmineError):
    """A rollout, template or configuration file is invalid."""


class NotSupportedError(SpecError):
    """A valid Argo Rollouts feature that coalmine does not run yet."""


class StoreError(CoalmineError):
    """The state database cannot be used (unreachable, newer schema, conflict)."""


class RouterError(CoalmineError):
    """The traffic router cannot be reached or refused a change."""


class StaleRoutingError(RouterError):
    """The router serves a newer routing generation than the one sent."""

    def __init__(self, message: str, current_generation: int, **where: str | None) -> None:
        super().__init__(message, **where)  # type: ignore[arg-type]
        self.current_generation = current_generation
