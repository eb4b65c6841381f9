"""Resource names from what people type: "sales", "sales@3", an upload's uid, or a full resource name."""

from __future__ import annotations

from dataclasses import dataclass

from quarry._exceptions import UsageError

__all__ = ["DatasetRef", "dataset_name", "parse_ref", "upload_name", "version_name"]

LATEST = "latest"


def dataset_name(namespace: str, dataset: str) -> str:
    """`namespaces/{ns}/datasets/{dataset}` for a short name; a full name passes through."""
    if dataset.startswith("namespaces/"):
        return dataset
    if not dataset or "/" in dataset or "@" in dataset:
        raise UsageError(f"invalid dataset name {dataset!r}")
    return f"namespaces/{namespace}/datasets/{dataset}"


def version_name(namespace: str, dataset: str, version: int | str = LATEST) -> str:
    """`…/datasets/{dataset}/versions/{version}`; a full version name passes through."""
    if isinstance(version, str) and version.startswith("namespaces/"):
        return version
    if dataset.startswith("namespaces/") and "/versions/" in dataset:
        return dataset
    text = str(version).strip() or LATEST
    if "/" in text:
        raise UsageError(f"invalid version {version!r}")
    return f"{dataset_name(namespace, dataset)}/versions/{text}"


def upload_name(namespace: str, upload: str) -> str:
    """`namespaces/{ns}/uploads/{uid}` for a uid; a full name passes through."""
    if upload.startswith("namespaces/"):
        return upload
    if not upload or "/" in upload:
        raise UsageError(f"invalid upload id {upload!r}")
    return f"namespaces/{namespace}/uploads/{upload}"


@dataclass(frozen=True)
class DatasetRef:
    """A dataset and one of its versions, as written `NAME@VERSION` (the version defaults to latest)."""

    dataset: str
    version: str = LATEST

    def name(self, namespace: str) -> str:
        """The version's resource name."""
        return version_name(namespace, self.dataset, self.version)


def parse_ref(text: str) -> DatasetRef:
    """`NAME`, `NAME@3`, `NAME@latest` or `NAME@{uid}`."""
    dataset, sep, version = text.partition("@")
    if not dataset or (sep and not version):
        raise UsageError(f"invalid reference {text!r}: expected NAME or NAME@VERSION")
    dataset_name("x", dataset)  # same checks as any dataset name
    return DatasetRef(dataset, version or LATEST)
