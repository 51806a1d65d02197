"""The one exception type hrmkit raises for bad user input; the CLI turns it into a message and exit code 2."""


class HrmkitError(Exception):
    """Bad input or an impossible request. The message names the file, field and value at fault."""
