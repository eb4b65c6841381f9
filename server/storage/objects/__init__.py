"""Object stores: one interface (`base.ObjectStore`), an S3 and a local-directory implementation."""

from server.storage.objects.base import CompletedPart, MultipartInfo, ObjectInfo, ObjectStore, PartWriter
from server.storage.objects.factory import open_store

__all__ = ["CompletedPart", "MultipartInfo", "ObjectInfo", "ObjectStore", "PartWriter", "open_store"]
