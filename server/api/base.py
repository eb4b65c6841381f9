"""What every servicer holds: the services it calls and the caller resolver."""

from __future__ import annotations

from server.api.caller import CallerResolver
from server.domain.services import Services


class ServicerBase:
    """Base of the servicer halves; the gRPC-generated base class comes last in the final class."""

    def __init__(self, services: Services, caller: CallerResolver) -> None:
        self.services = services
        self.caller = caller
