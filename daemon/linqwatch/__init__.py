"""linqwatch: on-call alerting for the phone lines of a Linq partner account.

Importing the package loads nothing else: `linqwatch check-config` must not
pay for the daemon's imports, and modules pick what they need.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]

try:
    __version__ = version("linqwatch")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
