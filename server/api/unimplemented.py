"""Placeholder servicers whose every method answers UNIMPLEMENTED, for RPCs later work fills in."""

from __future__ import annotations

from typing import Any

from server.domain.errors import NotSupported


def unimplemented(base: type, methods: list[str]) -> Any:
    """An instance of `base` whose `methods` all raise NotSupported (mapped to UNIMPLEMENTED)."""

    def make(name: str) -> Any:
        async def method(self: Any, request: Any, context: Any) -> Any:
            raise NotSupported(f"{name} is not implemented yet", reason="NOT_IMPLEMENTED")

        method.__name__ = name
        return method

    return type(f"Unimplemented{base.__name__}", (base,), {name: make(name) for name in methods})()
