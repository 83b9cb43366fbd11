"""Exceptions that carry a message meant for the user.

Every error that bad *input* can cause derives from :class:`McdoseError`.  The command line
prints its message as one line and exits non-zero; library users can catch it.
"""


class McdoseError(Exception):
    """An error caused by the user's input or environment, with a one-line explanation."""


class InputError(McdoseError, ValueError):
    """Invalid input data or parameters (bad file, bad value, inconsistent geometry)."""


class CaseFileError(InputError):
    """A missing, malformed or inconsistent case file; the message names file and dataset."""


class UnknownNuclideError(InputError, KeyError):
    """A nuclide name that the ICRP-107 database does not contain."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class OutputError(InputError):
    """An output that cannot be written safely: read-only or missing folder, full disk (a file
    that came out empty or short), an output that would replace an input, an existing file
    without ``--overwrite``.  The destination is left as it was."""


class DeviceError(McdoseError, RuntimeError):
    """A requested compute device (e.g. CUDA) is not available."""
