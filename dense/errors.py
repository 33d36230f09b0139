"""The one exception type a user can cause; the CLI prints it as a single line."""

from __future__ import annotations

import sys
from collections.abc import Callable


class DenseError(Exception):
    """A problem with the user's input (config, paths, files): reported without a traceback."""


def run_script(main: Callable[[], object]) -> None:
    """Run an experiment script's ``main`` as the CLI runs a command: a DenseError prints one
    ``error: …`` line and exits with 2, Ctrl-C exits with 130, both without a traceback."""
    try:
        main()
    except DenseError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
