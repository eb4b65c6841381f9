"""Open the object store a settings object names."""

from __future__ import annotations

from server.settings import LocalLocation, Settings
from server.storage.objects.base import ObjectStore


async def open_store(settings: Settings) -> ObjectStore:
    """Open (and for a local directory, lay out) the configured store; close it with `await store.close()`."""
    location = settings.storage
    if isinstance(location, LocalLocation):
        from server.storage.objects.local import LocalStore

        return await LocalStore(location.path).open()
    from server.storage.objects.s3 import S3Store

    secret = settings.s3_secret_access_key.get_secret_value() if settings.s3_secret_access_key else None
    return await S3Store(location, settings.s3_access_key_id, secret,
                         parts_in_flight=settings.s3_parts_in_flight).open()
