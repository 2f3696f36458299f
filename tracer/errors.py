"""The one exception type the command line turns into a one-line message."""


class TracerError(Exception):
    """Bad user input (a file, a flag, a scene): the message names what and where.

    The CLI prints ``tracer: error: <message>`` and exits with status 2; nothing
    that raises this should need a traceback to be understood.
    """
