"""The one exception type KASP raises for problems a user can fix.

Every message names the problem and the fix. The CLI prints it without a traceback and exits 2.
"""


class KaspError(Exception):
    """A user-facing error: bad input, missing file, unsupported model, unavailable data."""
