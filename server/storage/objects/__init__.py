"""Object stores: the `ObjectStore` interface (in server.model.objects) over S3 and a local directory."""

from server.storage.objects.factory import open_store

__all__ = ["open_store"]
