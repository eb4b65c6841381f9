"""Who is calling: the namespace every request acts in, resolved in one place (`server/api/caller.py`)."""

from __future__ import annotations

from dataclasses import dataclass

from server.model.errors import InvalidArgument, PermissionDenied
from server.model.names import NAME_PATTERN


@dataclass(frozen=True)
class Caller:
    """The caller's namespace and identity (the identity is the author of the versions it commits)."""

    namespace: str
    identity: str = "anonymous"

    def parent(self, parent: str) -> str:
        """The namespace named by a request's `parent` ("namespaces/{ns}", or empty for the caller's own)."""
        if not parent:
            return self.namespace
        prefix, _, namespace = parent.partition("/")
        if prefix != "namespaces" or not NAME_PATTERN.match(namespace):
            raise InvalidArgument.field("parent", f"must be namespaces/{{namespace}}, got {parent!r}")
        return self.check(namespace)

    def check(self, namespace: str) -> str:
        """Refuse to act in a namespace other than the caller's."""
        if namespace != self.namespace:
            raise PermissionDenied(f"caller of namespace {self.namespace!r} cannot act in {namespace!r}",
                                   reason="NAMESPACE_MISMATCH")
        return namespace
