"""Quarry client: the Python SDK and the `quarry` command line.

The generated stubs of the contract are in `quarry.v1`.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
