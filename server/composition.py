"""The composition root: the use cases built once from the open connections and the settings."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from server.connections import Connections
from server.domain.admission import Admission, AuthMode
from server.domain.audit import AuditTrail
from server.domain.budget import BufferBudget, StreamCosts
from server.domain.capabilities import Capabilities
from server.domain.datasets import Datasets
from server.domain.files import Files
from server.domain.identity import Authenticator
from server.domain.inline import InlineWrites
from server.domain.lifecycle import Lifecycle
from server.domain.listing import PageTokens
from server.domain.namespaces import Namespaces
from server.domain.parts import UploadLimits
from server.domain.pipeline import Pipeline
from server.domain.registration import Registrations
from server.domain.rowdiff import RowDiffs
from server.domain.services import Services
from server.domain.sweep import Sweeper
from server.domain.tables import Tables
from server.domain.tokens import Tokens
from server.domain.upload_stream import UploadStream
from server.domain.uploads import Uploads
from server.domain.versions import Versions
from server.memory import HeapTrimmer
from server.model.locations import S3Location
from server.settings import Settings
from server.storage import namespaces
from server.storage.db import Database
from server.storage.notifications import NotificationHub
from server.storage.objects.external import ExternalSources, S3Access
from server.storage.objects.routed import RoutedStore
from server.storage.ratelimit import RateLimiter


def capabilities_of(settings: Settings, storage_kind: str) -> Capabilities:
    """What GetCapabilities reports, from the settings."""
    return Capabilities(
        max_message_bytes=settings.max_message_bytes, max_chunk_bytes=settings.max_chunk_bytes,
        min_part_bytes=settings.min_part_bytes, max_part_bytes=settings.max_part_bytes,
        max_upload_bytes=settings.max_upload_bytes, max_open_uploads=settings.max_open_uploads,
        upload_expiry_seconds=settings.upload_expiry_seconds, max_page_size=settings.max_page_size,
        max_preview_rows=settings.max_preview_rows, storage_kind=storage_kind, auth_mode=settings.auth_mode,
        tls=settings.tls, client_certificates=settings.tls_client_ca_file is not None,
        max_url_ttl_seconds=settings.max_url_ttl_seconds, max_inline_bytes=settings.inline_max_bytes)


def upload_limits(settings: Settings) -> UploadLimits:
    """The upload limits the settings give."""
    return UploadLimits(
        max_chunk_bytes=settings.max_chunk_bytes,
        min_part_bytes=settings.min_part_bytes,
        max_part_bytes=settings.max_part_bytes,
        max_upload_bytes=settings.max_upload_bytes,
        max_open_uploads=settings.max_open_uploads,
        expiry_seconds=settings.upload_expiry_seconds,
    )


def external_sources(settings: Settings) -> ExternalSources:
    """What RegisterFiles may read: buckets at the S3 store's endpoint with its credentials, the register roots."""
    location = settings.storage
    access = None
    if isinstance(location, S3Location):
        secret = settings.s3_secret_access_key.get_secret_value() if settings.s3_secret_access_key else None
        access = S3Access(location.endpoint, location.region, settings.s3_access_key_id, secret)
    return ExternalSources(access, settings.register_root_paths)


@contextlib.asynccontextmanager
async def open_services(deps: Connections) -> AsyncIterator[Services]:
    """Build the services (and start the notification listener they share)."""
    settings = deps.settings
    db = Database(deps.pool)
    sources = external_sources(settings)
    # Quarry's store, Postgres for the inline files WriteFile keeps, and the external objects registered files point at
    store = RoutedStore(deps.store, db, sources)
    async with db.connection() as connection:
        key = await namespaces.page_token_key(connection)
    hub = NotificationHub(settings.database_url, connect_timeout=settings.startup_timeout_seconds)
    await hub.start()
    limiter = RateLimiter.from_url(settings.redis_url)
    authenticator = Authenticator(db, hub)
    authenticator.start()
    trimmer = HeapTrimmer(lambda: budget.idle)  # the heap given back once streams are done (server/memory.py)
    budget = BufferBudget(settings.max_buffer_bytes, settings.buffer_wait_seconds, on_idle=trimmer)
    try:
        tokens = PageTokens(key)
        uploads = Uploads(db, store, deps.queue, hub, upload_limits(settings), tokens, settings.max_page_size)
        datasets = Datasets(db, hub, tokens, settings.max_page_size)
        versions = Versions(db, deps.queue, hub, tokens, settings.max_page_size)
        costs = StreamCosts(window=settings.stream_window_bytes, max_chunk=settings.max_chunk_bytes)
        files = Files(db, store, versions, settings.max_preview_rows, tokens, settings.max_page_size, budget,
                      costs.download, settings.max_url_ttl_seconds)
        audit = AuditTrail(db, tokens, settings.max_page_size)
        spaces = Namespaces(db, hub, tokens, settings.max_page_size)
        tables = Tables(files, datasets, store, settings.flight_split_bytes, budget, costs.table)
        yield Services(
            db=db, uploads=uploads, upload_stream=UploadStream(uploads, budget, costs), datasets=datasets,
            versions=versions, files=files,
            pipeline=Pipeline(uploads, versions, Registrations(db, versions, sources, store)),
            sweeper=Sweeper(uploads, versions, stuck_after=settings.stuck_after_seconds,
                            gc_grace=settings.gc_grace_seconds, audit=audit,
                            audit_retention_days=settings.audit_retention_days,
                            deleted_retention_days=settings.deleted_retention_days),
            tables=tables, row_diffs=RowDiffs(files, tables, budget),
            namespaces=spaces, tokens=Tokens(db, authenticator, tokens, settings.max_page_size), audit=audit,
            admission=Admission(AuthMode(settings.auth_mode), settings.default_namespace, authenticator,
                                spaces, limiter, audit),
            lifecycle=Lifecycle(db, versions, settings.deleted_retention_days, datasets.changed),
            inline=InlineWrites(db, versions, settings.inline_max_bytes, datasets.changed),
            registrations=Registrations(db, versions, sources, store))
    finally:
        trimmer.close()
        await sources.close()
        await authenticator.close()
        await limiter.close()
        await hub.close()
