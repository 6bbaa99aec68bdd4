"""User-facing errors: one clear sentence, exit code 2, no traceback.

Boundaries (CLIs, file loaders, config constructors) raise :class:`UserError`; CLIs wrap their
``main`` with :func:`run_cli`, which prints the message on one line and exits with code 2.
"""

from __future__ import annotations

import functools
import sys
from typing import Callable, NoReturn


class UserError(ValueError):
    """Bad input from a person: a bad flag, file, shape or name. The message is one sentence."""


def fail(message: str) -> NoReturn:
    raise UserError(message)


def run_cli(main: Callable[..., int | None]) -> Callable[..., NoReturn]:
    """Decorate a CLI ``main``: UserError -> one line on stderr and exit 2; Ctrl-C -> exit 130."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> NoReturn:
        try:
            code = main(*args, **kwargs)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        except FileNotFoundError as e:
            print(f"error: file not found: {e.filename or e}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)
        sys.exit(code or 0)

    return wrapper
