"""The one exception type users see.

Anything raised as :class:`FastDFKDError` is a problem with the user's input or
environment; its message is one sentence naming the problem and the fix. The CLI
prints it without a traceback and exits non-zero. Every other exception is a bug.
"""


class FastDFKDError(Exception):
    """A user-facing error: bad input, a missing file, an impossible setting."""


def reason(exc: BaseException, limit: int = 200) -> str:
    """``Type: first line of the message``: what a one-sentence error quotes of an exception from other code."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:limit]}" if lines else type(exc).__name__
