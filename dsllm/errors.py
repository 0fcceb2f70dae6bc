"""Errors a user can cause. The CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """A mistake in the user's input (missing file, bad URI, malformed config, bad credentials).

    The message names the thing and the reason; no traceback is shown for it.
    """


class NotYetImplemented(UserError):
    """A command whose capability is not built yet says so plainly instead of pretending."""
