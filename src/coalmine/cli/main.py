"""The ``coalmine`` command. Errors a user can cause print one line and exit with code 2."""

from __future__ import annotations

import sys

import typer

from coalmine.errors import CoalmineError

app = typer.Typer(
    name="coalmine",
    help="A canary manager: shift traffic step by step, judge the canary, roll back by itself.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """A canary manager: shift traffic step by step, judge the canary, roll back by itself."""


def _register() -> None:
    """Attach the command groups. Imported lazily so that `coalmine --help` stays fast."""
    from coalmine.cli import groups

    groups.register(app)


def main() -> None:
    _register()
    try:
        app()  # standalone: usage errors print a usage line and exit with code 2
    except CoalmineError as err:
        print(f"coalmine: error: {err.one_line()}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
