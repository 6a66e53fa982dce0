"""The one exception type a user should ever see.

Anything the user can cause (a missing file, an empty corpus, a bad flag) raises
`SokhanError` with a message that fits on one line. The CLI prints it and exits with
status 2; the server turns it into a 4xx JSON error. Everything else is a bug and is
allowed to show a traceback.
"""


class SokhanError(Exception):
    """A user-facing error: one clear line, no traceback."""
