"""Register Quarry's servicers on a gRPC server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from grpc import aio
from quarry.v1 import (
    audit_service_pb2_grpc,
    dataset_service_pb2_grpc,
    namespace_service_pb2_grpc,
    token_service_pb2_grpc,
    upload_service_pb2_grpc,
)

from server.api import wire
from server.api.caller import CallerResolver
from server.api.datasets import DatasetMethods
from server.api.identity import AuditServicer, NamespaceServicer, TokenServicer
from server.api.uploads import UploadServicer
from server.api.versions import VersionMethods
from server.domain.services import Services


class _Handlers:
    """Stands in for a server to a generated `add_…_to_server` function: keeps the handlers it registers."""

    def __init__(self) -> None:
        self.service = ""
        self.handlers: dict[str, grpc.RpcMethodHandler] = {}

    def add_generic_rpc_handlers(self, handlers: object) -> None:
        pass  # the same handlers arrive by name below

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self.service, self.handlers = service, dict(handlers)


def _generated(add: Callable[[Any, Any], None], servicer: object) -> _Handlers:
    """The handlers a generated `add_…_to_server` function registers for `servicer`."""
    generated = _Handlers()
    add(servicer, generated)
    return generated


def _register(server: aio.Server, generated: _Handlers) -> None:
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(generated.service, generated.handlers),))
    server.add_registered_method_handlers(generated.service, generated.handlers)


def _recoded(generated: _Handlers, name: str, **codec: Callable[..., Any]) -> None:
    """Give the generated handler of method `name` another request deserializer or response serializer."""
    handler = generated.handlers[name]
    make = grpc.stream_unary_rpc_method_handler if handler.stream_unary else grpc.unary_stream_rpc_method_handler
    behavior = handler.stream_unary or handler.unary_stream
    codec = {"request_deserializer": handler.request_deserializer,
             "response_serializer": handler.response_serializer, **codec}
    generated.handlers[name] = make(behavior, **codec)


def _add_upload_service(servicer: UploadServicer, server: aio.Server) -> None:
    """UploadService as generated, except that Upload's messages are read by `wire.upload_request` (chunks read
    in place, without protobuf's two copies of their data)."""
    generated = _generated(upload_service_pb2_grpc.add_UploadServiceServicer_to_server, servicer)
    _recoded(generated, "Upload", request_deserializer=wire.upload_request)
    _register(server, generated)


def _add_dataset_service(servicer: DatasetServicer, server: aio.Server) -> None:
    """DatasetService as generated, except that ReadFile's messages may come encoded already (`wire.read_response`:
    one copy of the data, where protobuf makes two)."""
    generated = _generated(dataset_service_pb2_grpc.add_DatasetServiceServicer_to_server, servicer)
    _recoded(generated, "ReadFile", response_serializer=wire.serialize_response)
    _register(server, generated)


class DatasetServicer(DatasetMethods, VersionMethods, dataset_service_pb2_grpc.DatasetServiceServicer):
    """DatasetService: the dataset methods and the version methods."""


def add_quarry_servicers(server: aio.Server, services: Services, idle_seconds: float) -> None:
    """Add DatasetService, UploadService (whose upload streams end after `idle_seconds` without a message),
    TokenService, NamespaceService and AuditService."""
    caller = CallerResolver()
    _add_dataset_service(DatasetServicer(services, caller), server)
    _add_upload_service(UploadServicer(services.uploads, services.upload_stream, caller, idle_seconds), server)
    token_service_pb2_grpc.add_TokenServiceServicer_to_server(TokenServicer(services.tokens, caller), server)
    namespace_service_pb2_grpc.add_NamespaceServiceServicer_to_server(
        NamespaceServicer(services.namespaces, caller), server)
    audit_service_pb2_grpc.add_AuditServiceServicer_to_server(AuditServicer(services.audit, caller), server)
