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


def excerpt(text: str, start: int, end: int, width: int = 40) -> str:
    """``text[start:end]`` quoted with some of what surrounds it (about ``width`` characters in
    all, "..." where cut), so an error points at the place in a long text where the problem is."""
    width = max(width, end - start)
    left = max(0, min(start - (width - (end - start)) // 2, len(text) - width))
    right = min(len(text), left + width)
    return ("..." if left else "") + repr(text[left:right]) + ("..." if right < len(text) else "")


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
