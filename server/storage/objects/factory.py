"""Open the object store a location names."""

from __future__ import annotations

from server.model.locations import LocalLocation, StorageLocation
from server.model.objects import ObjectStore


async def open_store(location: StorageLocation, *, access_key_id: str | None = None,
                     secret_access_key: str | None = None, parts_in_flight: int = 4) -> ObjectStore:
    """Open (and for a local directory, lay out) the store; close it with `await store.close()`.
    Without keys, S3 uses the AWS credential chain; `parts_in_flight` bounds S3 part uploads across the process."""
    if isinstance(location, LocalLocation):
        from server.storage.objects.local import LocalStore

        return await LocalStore(location.path).open()
    from server.storage.objects.s3 import S3Store

    return await S3Store(location, access_key_id, secret_access_key, parts_in_flight=parts_in_flight).open()
