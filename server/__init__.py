"""Quarry server: gRPC API, domain logic and storage. `quarry serve` runs it."""

__version__ = "0.1.0"
