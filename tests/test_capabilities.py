"""GetCapabilities reports the limits the server enforces: each limit is accepted at its value and refused one
past it, so a generated client that checks against the answer is never surprised."""

from __future__ import annotations

import grpc
import pytest
from grpc import aio
from quarry.v1 import capabilities_service_pb2 as cpb
from quarry.v1 import dataset_pb2
from quarry.v1 import dataset_service_pb2 as dpb
from quarry.v1 import upload_service_pb2 as upb

from tests.support import Api, ServerHandle, error_info, open_api
from tests.uploading import create_request


async def capabilities(api: Api) -> cpb.GetCapabilitiesResponse:
    return await api.capabilities.GetCapabilities(cpb.GetCapabilitiesRequest())


async def refused(call: object, code: grpc.StatusCode, reason: str) -> None:
    with pytest.raises(aio.AioRpcError) as raised:
        await call  # type: ignore[misc]
    assert (raised.value.code(), error_info(raised.value)[0]) == (code, reason), raised.value


async def test_the_api_version_range_is_the_package_served(api: Api) -> None:
    caps = await capabilities(api)
    assert (caps.min_api_version, caps.max_api_version) == ("v1", "v1")
    assert dpb.DESCRIPTOR.package == f"quarry.{caps.max_api_version}"


async def test_the_path_limit(api: Api) -> None:
    longest = (await capabilities(api)).max_path_length
    assert longest == 1024
    path = "d/" + "p" * (longest - 2)
    created = await api.uploads.CreateUpload(create_request("paths", path))
    assert created.upload.path == path
    await api.uploads.CancelUpload(upb.CancelUploadRequest(name=created.upload.name))
    await refused(api.uploads.CreateUpload(create_request("paths", path + "x")), grpc.StatusCode.INVALID_ARGUMENT,
                  "INVALID_PATH")


async def test_the_label_limits(api: Api) -> None:
    caps = await capabilities(api)
    most, key, value = caps.max_labels, caps.max_label_key_length, caps.max_label_value_length
    assert (most, key, value) == (64, 63, 63)
    full = {f"k{i}": "v" for i in range(most - 1)} | {"k" * key: "v" * value}
    made = await api.datasets.CreateDataset(dpb.CreateDatasetRequest(
        dataset_id="labelled", dataset=dataset_pb2.Dataset(labels=full)))
    assert dict(made.dataset.labels) == full
    for labels in ({**full, "one-more": "v"}, {"k" * (key + 1): "v"}, {"k": "v" * (value + 1)}):
        await refused(api.datasets.CreateDataset(dpb.CreateDatasetRequest(
            dataset_id="over", dataset=dataset_pb2.Dataset(labels=labels))), grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_LABELS")


async def test_the_changes_per_commit_limit(api: Api) -> None:
    most = (await capabilities(api)).max_changes_per_commit
    assert most == 10_000
    await api.datasets.CreateDataset(dpb.CreateDatasetRequest(dataset_id="many"))
    parent = f"{api.parent}/datasets/many"
    # At the limit the commit is read (and refused for what it names); past it, refused for its size alone.
    at = [f"p{i}.csv" for i in range(most)]
    await refused(api.datasets.CommitVersion(dpb.CommitVersionRequest(parent=parent, delete_paths=at)),
                  grpc.StatusCode.FAILED_PRECONDITION, "PATH_NOT_FOUND")
    await refused(api.datasets.CommitVersion(dpb.CommitVersionRequest(parent=parent, delete_paths=[*at, "x.csv"])),
                  grpc.StatusCode.INVALID_ARGUMENT, "COMMIT_TOO_LARGE")


async def test_the_parts_limit(small_parts_file: ServerHandle) -> None:
    api = open_api(small_parts_file.address)
    try:
        caps = await capabilities(api)
        assert caps.max_parts == 10_000
        largest = caps.max_parts * caps.max_part_size_bytes  # every part at its largest
        assert largest < caps.max_upload_bytes
        created = await api.uploads.CreateUpload(create_request("parts", "big.bin", largest))
        assert created.upload.part_size_bytes == caps.max_part_size_bytes
        await api.uploads.CancelUpload(upb.CancelUploadRequest(name=created.upload.name))
        await refused(api.uploads.CreateUpload(create_request("parts", "bigger.bin", largest + 1)),
                      grpc.StatusCode.RESOURCE_EXHAUSTED, "TOO_MANY_PARTS")
    finally:
        await api.channel.close()
