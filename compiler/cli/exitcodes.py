"""The exit codes of the ``sekuire`` command (one place, imported by the entry point and every subcommand)."""

__all__ = ["EXIT_ERROR", "EXIT_OK", "EXIT_USAGE", "EXIT_VIOLATION"]

EXIT_OK = 0
#: A one-line error on stderr: bad input, failed verification, unreachable backend.
EXIT_ERROR = 1
#: argparse's own code for a bad command line.
EXIT_USAGE = 2
#: The policy denied what was asked (``push`` without ``--force``).
EXIT_VIOLATION = 3
