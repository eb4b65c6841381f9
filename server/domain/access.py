"""Who may call what: the one table from each RPC (its full gRPC method name) to what it needs.

    none            no token: health probes (Kubernetes), capabilities (a client learns the auth mode there)
    authenticated   any valid token: reflection, listing the namespaces one's token is granted
    reader          get, list, preview, stats, read, download URL, watch
    writer          + create, update and clone datasets (reader on a clone's source), uploads, commits, inline
                      files, cancel and retry
    admin           + delete and undelete datasets, manage the namespace's tokens, read its audit log
    operator        create namespaces and set their quotas (an operator also holds every role everywhere)

`mutating` marks the calls that change something: each one is an audit row, whatever its outcome (a denied
call of any kind is one too). A test checks that every RPC of every service the server registers is here, so
a new RPC cannot ship without a decision.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.model.identity import Access


@dataclass(frozen=True)
class Rule:
    """What one RPC needs, and whether it changes anything."""

    access: Access
    mutating: bool = False


def _service(name: str, rules: dict[str, Rule]) -> dict[str, Rule]:
    return {f"/{name}/{method}": rule for method, rule in rules.items()}


READ = Rule(Access.READER)
WRITE = Rule(Access.WRITER, mutating=True)

RPC_RULES: dict[str, Rule] = {
    **_service("quarry.v1.DatasetService", {
        "CreateDataset": WRITE,
        "GetDataset": READ,
        "ListDatasets": READ,
        "UpdateDataset": WRITE,
        "DeleteDataset": Rule(Access.ADMIN, mutating=True),
        "ListVersions": READ,
        "GetVersion": READ,
        "ListVersionFiles": READ,
        "CommitVersion": WRITE,
        "WatchVersion": READ,
        "DiffVersions": READ,
        "DiffRows": READ,
        "PreviewFile": READ,
        "GetFileStats": READ,
        "ReadFile": READ,
        "GetDownloadUrl": READ,
        # Writer in the new dataset's namespace; the use case also checks reader in the source's.
        "CloneDataset": WRITE,
        "UndeleteDataset": Rule(Access.ADMIN, mutating=True),
        "WriteFile": WRITE,
        "RegisterFiles": WRITE,
    }),
    **_service("quarry.v1.UploadService", {
        "CreateUpload": WRITE,
        "Upload": WRITE,
        "GetUpload": READ,
        "ListUploads": READ,
        "CompleteUpload": WRITE,
        "CancelUpload": WRITE,
        "RetryUpload": WRITE,
        "WatchUpload": READ,
    }),
    **_service("quarry.v1.CapabilitiesService", {
        "GetCapabilities": Rule(Access.NONE),
    }),
    **_service("quarry.v1.TokenService", {
        "CreateToken": Rule(Access.ADMIN, mutating=True),
        "ListTokens": Rule(Access.ADMIN),
        "RevokeToken": Rule(Access.ADMIN, mutating=True),
    }),
    **_service("quarry.v1.NamespaceService", {
        "CreateNamespace": Rule(Access.OPERATOR, mutating=True),
        "ListNamespaces": Rule(Access.AUTHENTICATED),
        "GetNamespace": READ,
        "UpdateNamespace": Rule(Access.OPERATOR, mutating=True),
    }),
    **_service("quarry.v1.AuditService", {
        "ListAuditEvents": Rule(Access.ADMIN),
    }),
    **_service("grpc.health.v1.Health", {
        "Check": Rule(Access.NONE),
        "Watch": Rule(Access.NONE),
        "List": Rule(Access.NONE),
    }),
    **_service("grpc.reflection.v1alpha.ServerReflection", {
        "ServerReflectionInfo": Rule(Access.AUTHENTICATED),
    }),
    # Arrow Flight (QUARRY_FLIGHT_ADDRESS): reads of tables. The methods Quarry does not serve answer
    # UNIMPLEMENTED, to a caller with a valid token.
    **_service("arrow.flight.protocol.FlightService", {
        "ListFlights": READ,
        "GetFlightInfo": READ,
        "GetSchema": READ,
        "DoGet": READ,
        "Handshake": Rule(Access.AUTHENTICATED),
        "DoPut": Rule(Access.AUTHENTICATED),
        "DoExchange": Rule(Access.AUTHENTICATED),
        "DoAction": Rule(Access.AUTHENTICATED),
        "ListActions": Rule(Access.AUTHENTICATED),
    }),
}


def rule_for(method: str) -> Rule | None:
    """The rule of a full method name ("/quarry.v1.DatasetService/GetDataset"), or None if it has none."""
    return RPC_RULES.get(method)
