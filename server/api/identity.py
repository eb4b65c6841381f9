"""TokenService, NamespaceService and AuditService: translate messages to identity use cases and back."""

from __future__ import annotations

from grpc import aio
from quarry.v1 import audit_service_pb2 as apb
from quarry.v1 import audit_service_pb2_grpc as apb_grpc
from quarry.v1 import namespace_service_pb2 as npb
from quarry.v1 import namespace_service_pb2_grpc as npb_grpc
from quarry.v1 import token_service_pb2 as tpb
from quarry.v1 import token_service_pb2_grpc as tpb_grpc

from server.api import convert_identity as convert
from server.api.caller import CallerResolver
from server.domain.audit import AuditTrail
from server.domain.namespaces import Namespaces
from server.domain.tokens import Tokens


class TokenServicer(tpb_grpc.TokenServiceServicer):
    """The TokenService handlers."""

    def __init__(self, tokens: Tokens, caller: CallerResolver) -> None:
        self._tokens = tokens
        self._caller = caller

    async def CreateToken(self, request: tpb.CreateTokenRequest,
                          context: aio.ServicerContext) -> tpb.CreateTokenResponse:
        issued = await self._tokens.create(self._caller(context), convert.new_token(request.token, request.request_id))
        return tpb.CreateTokenResponse(token=convert.token(issued.record), secret=issued.secret)

    async def ListTokens(self, request: tpb.ListTokensRequest, context: aio.ServicerContext) -> tpb.ListTokensResponse:
        page, token = await self._tokens.list(self._caller(context), request.parent, request.page_size,
                                              request.page_token, request.show_revoked)
        return tpb.ListTokensResponse(tokens=[convert.token(t) for t in page], next_page_token=token)

    async def RevokeToken(self, request: tpb.RevokeTokenRequest,
                          context: aio.ServicerContext) -> tpb.RevokeTokenResponse:
        revoked = await self._tokens.revoke(self._caller(context), request.name)
        return tpb.RevokeTokenResponse(token=convert.token(revoked))


class NamespaceServicer(npb_grpc.NamespaceServiceServicer):
    """The NamespaceService handlers."""

    def __init__(self, namespaces: Namespaces, caller: CallerResolver) -> None:
        self._namespaces = namespaces
        self._caller = caller

    async def CreateNamespace(self, request: npb.CreateNamespaceRequest,
                              context: aio.ServicerContext) -> npb.CreateNamespaceResponse:
        created = await self._namespaces.create(self._caller(context), request.namespace_id,
                                                convert.quota_from(request.namespace.quota), request.request_id or None)
        return npb.CreateNamespaceResponse(namespace=convert.namespace(created))

    async def ListNamespaces(self, request: npb.ListNamespacesRequest,
                             context: aio.ServicerContext) -> npb.ListNamespacesResponse:
        page, token = await self._namespaces.list(self._caller(context), request.page_size, request.page_token)
        return npb.ListNamespacesResponse(namespaces=[convert.namespace(n) for n in page], next_page_token=token)

    async def GetNamespace(self, request: npb.GetNamespaceRequest,
                           context: aio.ServicerContext) -> npb.GetNamespaceResponse:
        found, usage = await self._namespaces.get(self._caller(context), request.name)
        return npb.GetNamespaceResponse(namespace=convert.namespace(found, usage))

    async def UpdateNamespace(self, request: npb.UpdateNamespaceRequest,
                              context: aio.ServicerContext) -> npb.UpdateNamespaceResponse:
        change = convert.quota_change(request.namespace, list(request.update_mask.paths))
        updated = await self._namespaces.update(self._caller(context), request.namespace.name,
                                                request.namespace.etag, change)
        return npb.UpdateNamespaceResponse(namespace=convert.namespace(updated))


class AuditServicer(apb_grpc.AuditServiceServicer):
    """The AuditService handlers."""

    def __init__(self, audit: AuditTrail, caller: CallerResolver) -> None:
        self._audit = audit
        self._caller = caller

    async def ListAuditEvents(self, request: apb.ListAuditEventsRequest,
                              context: aio.ServicerContext) -> apb.ListAuditEventsResponse:
        page, token = await self._audit.list(self._caller(context), request.parent, request.filter, request.page_size,
                                             request.page_token)
        return apb.ListAuditEventsResponse(events=[convert.audit_event(e) for e in page], next_page_token=token)
