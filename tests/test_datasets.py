"""DatasetService's dataset methods through the real server: create, get, list, update, delete.

Dataset CRUD never touches the object store, so these run against the file-store server only (with its
worker where a dataset needs a version); each test acts in a namespace of its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import asyncpg
import grpc
import pytest
from google.protobuf import field_mask_pb2
from grpc import aio
from quarry.v1 import common_pb2, dataset_pb2, upload_pb2
from quarry.v1 import dataset_service_pb2 as pb
from quarry.v1 import upload_service_pb2 as upload_pb

from tests.support import Api, QuarryProcess, ServerHandle, error_info, field_violations, open_api, tampered_page_token
from tests.uploading import chunk_messages, create_request, stream_of

DRAFT = dataset_pb2.DATASET_STATE_DRAFT
DELETED = dataset_pb2.DATASET_STATE_DELETED


@pytest.fixture
async def api(server_file: ServerHandle) -> AsyncIterator[Api]:
    """Stubs on the file-store server, in a namespace of this test's own."""
    client = open_api(server_file.address)
    yield client
    await client.channel.close()


@pytest.fixture
def pool(pools: dict[str, asyncpg.Pool]) -> asyncpg.Pool:
    """Rows of the file-store server's database."""
    return pools["file"]


async def fails(call: Awaitable[Any], code: grpc.StatusCode, reason: str) -> aio.AioRpcError:
    with pytest.raises(aio.AioRpcError) as raised:
        await call
    assert raised.value.code() == code, raised.value
    assert error_info(raised.value)[0] == reason, raised.value
    return raised.value


async def rows(pool: asyncpg.Pool, namespace: str) -> list[asyncpg.Record]:
    """Every dataset row of a namespace, deleted ones included."""
    return await pool.fetch(
        "SELECT d.* FROM datasets d JOIN namespaces n ON n.id = d.namespace_id WHERE n.name = $1 ORDER BY d.name",
        namespace)


async def create(api: Api, name: str, **fields: Any) -> dataset_pb2.Dataset:
    request_id = fields.pop("request_id", "")
    response = await api.datasets.CreateDataset(pb.CreateDatasetRequest(
        dataset_id=name, dataset=dataset_pb2.Dataset(**fields), request_id=request_id))
    return response.dataset


async def get(api: Api, name: str) -> dataset_pb2.Dataset:
    return (await api.datasets.GetDataset(pb.GetDatasetRequest(name=f"{api.parent}/datasets/{name}"))).dataset


async def list_all(api: Api, **request: Any) -> list[dataset_pb2.Dataset]:
    found: list[dataset_pb2.Dataset] = []
    token = ""
    while True:
        page = await api.datasets.ListDatasets(pb.ListDatasetsRequest(page_token=token, **request))
        found += page.datasets
        token = page.next_page_token
        if not token:
            return found


async def names(api: Api, **request: Any) -> list[str]:
    return [d.name.rsplit("/", 1)[1] for d in await list_all(api, **request)]


def update_request(dataset: dataset_pb2.Dataset, *paths: str) -> pb.UpdateDatasetRequest:
    return pb.UpdateDatasetRequest(dataset=dataset, update_mask=field_mask_pb2.FieldMask(paths=list(paths)))


RULES = dataset_pb2.DatasetRules(max_file_bytes=1 << 20, allowed_formats=[common_pb2.FILE_FORMAT_CSV,
                                                                          common_pb2.FILE_FORMAT_PARQUET],
                                 min_rows=10, required_columns=["id", "ts"], allow_breaking_schema_changes=True)


# --- create and get ------------------------------------------------------------------------------------


async def test_create_and_get(api: Api, pool: asyncpg.Pool) -> None:
    created = await create(api, "sales.eu-2024_v1", description="EU sales", labels={"team": "finance", "tier": ""},
                           rules=RULES)
    assert created.name == f"{api.parent}/datasets/sales.eu-2024_v1"
    assert uuid.UUID(created.uid)
    assert created.description == "EU sales" and dict(created.labels) == {"team": "finance", "tier": ""}
    assert created.rules == RULES
    assert created.state == DRAFT
    assert created.current_version == "" and created.current_version_number == 0
    assert created.HasField("create_time") and created.update_time == created.create_time
    assert not created.HasField("delete_time")
    assert created.etag
    assert await get(api, "sales.eu-2024_v1") == created
    # An explicit parent naming the caller's namespace is the same as an empty one.
    explicit = await api.datasets.CreateDataset(pb.CreateDatasetRequest(parent=api.parent, dataset_id="b"))
    assert explicit.dataset.name == f"{api.parent}/datasets/b" and explicit.dataset.rules == dataset_pb2.DatasetRules()
    assert [r["name"] for r in await rows(pool, api.namespace)] == ["b", "sales.eu-2024_v1"]


async def test_create_repeats_in_rules_count_once(api: Api) -> None:
    rules = dataset_pb2.DatasetRules(allowed_formats=[common_pb2.FILE_FORMAT_CSV, common_pb2.FILE_FORMAT_CSV],
                                     required_columns=["a", "b", "a"])
    created = await create(api, "dups", rules=rules)
    assert list(created.rules.allowed_formats) == [common_pb2.FILE_FORMAT_CSV]
    assert list(created.rules.required_columns) == ["a", "b"]


BAD_CREATES = [
    ("", {}, "dataset_id", "INVALID_DATASET_NAME"),
    ("Upper", {}, "dataset_id", "INVALID_DATASET_NAME"),
    ("-dash-first", {}, "dataset_id", "INVALID_DATASET_NAME"),
    ("x" * 64, {}, "dataset_id", "INVALID_DATASET_NAME"),
    ("a/b", {}, "dataset_id", "INVALID_DATASET_NAME"),
    ("ok", {"description": "d" * 16385}, "dataset.description", "INVALID_DESCRIPTION"),
    ("ok", {"labels": {"k" * 64: "v"}}, "dataset.labels", "INVALID_LABELS"),
    ("ok", {"labels": {"": "v"}}, "dataset.labels", "INVALID_LABELS"),
    ("ok", {"labels": {"Team": "v"}}, "dataset.labels", "INVALID_LABELS"),
    ("ok", {"labels": {"k": "v" * 64}}, "dataset.labels[k]", "INVALID_LABELS"),
    ("ok", {"labels": {f"k{i}": "v" for i in range(65)}}, "dataset.labels", "INVALID_LABELS"),
    ("ok", {"rules": dataset_pb2.DatasetRules(max_file_bytes=-1)}, "dataset.rules.max_file_bytes", "INVALID_RULES"),
    ("ok", {"rules": dataset_pb2.DatasetRules(min_rows=-5)}, "dataset.rules.min_rows", "INVALID_RULES"),
    ("ok", {"rules": dataset_pb2.DatasetRules(allowed_formats=[common_pb2.FILE_FORMAT_UNSPECIFIED])},
     "dataset.rules.allowed_formats", "INVALID_RULES"),
    ("ok", {"rules": dataset_pb2.DatasetRules(allowed_formats=[99])},  # type: ignore[list-item]
     "dataset.rules.allowed_formats",
     "INVALID_RULES"),
    ("ok", {"rules": dataset_pb2.DatasetRules(required_columns=["id", ""])}, "dataset.rules.required_columns",
     "INVALID_RULES"),
    ("ok", {"request_id": "r" * 129}, "request_id", "INVALID_REQUEST_ID"),
]


@pytest.mark.parametrize(("name", "fields", "field", "reason"), BAD_CREATES)
async def test_bad_create_leaves_nothing(api: Api, pool: asyncpg.Pool, name: str, fields: dict[str, Any], field: str,
                                         reason: str) -> None:
    error = await fails(create(api, name, **fields), grpc.StatusCode.INVALID_ARGUMENT, reason)
    assert field_violations(error) == [field]
    assert await rows(pool, api.namespace) == []


async def test_create_in_another_namespace_is_denied(api: Api, pool: asyncpg.Pool) -> None:
    other = f"t-{uuid.uuid4().hex[:12]}"
    await fails(api.datasets.CreateDataset(pb.CreateDatasetRequest(parent=f"namespaces/{other}", dataset_id="x")),
                grpc.StatusCode.PERMISSION_DENIED, "NAMESPACE_NOT_GRANTED")
    error = await fails(api.datasets.CreateDataset(pb.CreateDatasetRequest(parent="projects/x", dataset_id="x")),
                        grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert field_violations(error) == ["parent"]
    assert await rows(pool, other) == [] and await rows(pool, api.namespace) == []


async def test_create_an_existing_name(api: Api, pool: asyncpg.Pool) -> None:
    first = await create(api, "taken", description="first")
    await fails(create(api, "taken", description="second"), grpc.StatusCode.ALREADY_EXISTS, "DATASET_ALREADY_EXISTS")
    assert await get(api, "taken") == first
    # An upload creates its dataset as a DRAFT; that is as live as any other.
    await api.uploads.CreateUpload(create_request("by-upload", "f.csv"))
    assert (await get(api, "by-upload")).state == DRAFT
    await fails(create(api, "by-upload"), grpc.StatusCode.ALREADY_EXISTS, "DATASET_ALREADY_EXISTS")
    assert [r["name"] for r in await rows(pool, api.namespace)] == ["by-upload", "taken"]


async def test_request_id_replay_returns_the_first_dataset(api: Api, pool: asyncpg.Pool) -> None:
    first = await create(api, "once", description="first", request_id="req-1")
    again = await create(api, "once", description="ignored on a replay", request_id="req-1")
    assert again == first
    # Concurrent retries with one request_id: one dataset, and every caller gets it.
    results = await asyncio.gather(*(create(api, "racing", request_id="req-2") for _ in range(8)))
    assert len({d.uid for d in results}) == 1
    # The same key for another dataset is a client bug, not a replay.
    error = await fails(create(api, "other", request_id="req-1"), grpc.StatusCode.INVALID_ARGUMENT,
                        "REQUEST_ID_REUSED")
    assert field_violations(error) == ["request_id"]
    assert [r["name"] for r in await rows(pool, api.namespace)] == ["once", "racing"]
    # A replay after the dataset was deleted still answers with it, as it is now.
    await api.datasets.DeleteDataset(pb.DeleteDatasetRequest(name=first.name))
    replayed = await create(api, "once", request_id="req-1")
    assert replayed.uid == first.uid and replayed.state == DELETED


async def test_get_errors(api: Api) -> None:
    await fails(api.datasets.GetDataset(pb.GetDatasetRequest(name=f"{api.parent}/datasets/missing")),
                grpc.StatusCode.NOT_FOUND, "DATASET_NOT_FOUND")
    for bad in ["", "datasets/x", f"{api.parent}/datasets", f"{api.parent}/tables/x", f"{api.parent}/datasets/x/y"]:
        error = await fails(api.datasets.GetDataset(pb.GetDatasetRequest(name=bad)), grpc.StatusCode.INVALID_ARGUMENT,
                            "INVALID_NAME")
        assert field_violations(error) == ["name"]
    await fails(api.datasets.GetDataset(pb.GetDatasetRequest(name=f"{api.parent}/datasets/Bad")),
                grpc.StatusCode.INVALID_ARGUMENT, "INVALID_DATASET_NAME")


async def test_other_namespaces_are_denied(api: Api, server_file: ServerHandle) -> None:
    other = open_api(server_file.address)
    try:
        theirs = await create(other, "private", description="theirs")
        for call in [
            api.datasets.GetDataset(pb.GetDatasetRequest(name=theirs.name)),
            api.datasets.ListDatasets(pb.ListDatasetsRequest(parent=other.parent)),
            api.datasets.UpdateDataset(update_request(dataset_pb2.Dataset(name=theirs.name, description="mine"),
                                                      "description")),
            api.datasets.DeleteDataset(pb.DeleteDatasetRequest(name=theirs.name)),
        ]:
            await fails(call, grpc.StatusCode.PERMISSION_DENIED, "NAMESPACE_NOT_GRANTED")
        # Denied before anything was looked at: a name that does not exist there is denied the same way.
        await fails(api.datasets.GetDataset(pb.GetDatasetRequest(name=f"{other.parent}/datasets/nope")),
                    grpc.StatusCode.PERMISSION_DENIED, "NAMESPACE_NOT_GRANTED")
        assert await get(other, "private") == theirs
    finally:
        await other.channel.close()


# --- list ------------------------------------------------------------------------------------------------


async def test_list_orders_and_pages(api: Api) -> None:
    assert (await api.datasets.ListDatasets(pb.ListDatasetsRequest())).datasets == []
    for name in ["cherry", "apple", "banana", "date", "elder"]:
        await create(api, name)
    assert await names(api) == ["apple", "banana", "cherry", "date", "elder"]
    assert await names(api, page_size=2) == ["apple", "banana", "cherry", "date", "elder"]
    assert await names(api, page_size=2, order_by="name desc") == ["elder", "date", "cherry", "banana", "apple"]
    assert await names(api, page_size=2, order_by="update_time") == ["cherry", "apple", "banana", "date", "elder"]
    await api.datasets.UpdateDataset(update_request(dataset_pb2.Dataset(name=f"{api.parent}/datasets/apple",
                                                                        description="touched"), "description"))
    assert await names(api, page_size=3, order_by="update_time desc") == ["apple", "elder", "date", "banana",
                                                                          "cherry"]
    first = await api.datasets.ListDatasets(pb.ListDatasetsRequest(page_size=5))
    assert len(first.datasets) == 5 and first.next_page_token == ""
    # A page size above the server's maximum is lowered to it, not refused.
    huge = await api.datasets.ListDatasets(pb.ListDatasetsRequest(page_size=1_000_000, parent=api.parent))
    assert len(huge.datasets) == 5
    # The page size may change between pages; the token only binds what decides the sequence.
    page = await api.datasets.ListDatasets(pb.ListDatasetsRequest(page_size=1))
    rest = await api.datasets.ListDatasets(pb.ListDatasetsRequest(page_size=10, page_token=page.next_page_token))
    assert [d.name.rsplit("/", 1)[1] for d in rest.datasets] == ["banana", "cherry", "date", "elder"]


async def test_list_filters(api: Api, worker_file: QuarryProcess) -> None:
    await create(api, "logs-web", labels={"team": "web", "env": "prod"})
    await create(api, "logs-db", labels={"team": "db", "env": "prod"})
    await create(api, "metrics", labels={"team": "web", "env": "dev"})
    await create(api, "logs_old", labels={"team": "web"})
    # An ACTIVE dataset has a version: the file-store worker makes one from an auto-committed upload.
    data = b"id,value\n1,2\n"
    create_upload = create_request("metrics", "m.csv", len(data), hashlib.sha256(data).hexdigest(), auto_commit=True)
    header = upload_pb.UploadRequest(header=upload_pb.UploadHeader(create=create_upload))
    finish = upload_pb.UploadRequest(finish=upload_pb.UploadFinish())
    sent = (await api.uploads.Upload(stream_of([header, *chunk_messages(data), finish]))).upload
    async for message in api.uploads.WatchUpload(upload_pb.WatchUploadRequest(name=sent.name), timeout=60):
        if message.upload.state in (upload_pb2.UPLOAD_STATE_PROMOTED, upload_pb2.UPLOAD_STATE_FAILED):
            assert message.upload.state == upload_pb2.UPLOAD_STATE_PROMOTED, message.upload.failure
            break
    metrics = await get(api, "metrics")
    assert metrics.state == dataset_pb2.DATASET_STATE_ACTIVE and metrics.current_version_number == 1
    metrics_name = f"{api.parent}/datasets/metrics"
    current = (await api.datasets.GetVersion(pb.GetVersionRequest(name=f"{metrics_name}/versions/1"))).version
    assert metrics.current_version == current.name == f"{metrics_name}/versions/{current.uid}"
    await api.datasets.DeleteDataset(pb.DeleteDatasetRequest(name=f"{api.parent}/datasets/logs_old"))

    assert await names(api) == ["logs-db", "logs-web", "metrics"]
    assert await names(api, filter="state = ACTIVE") == ["metrics"]
    assert await names(api, filter="state = DATASET_STATE_DRAFT") == ["logs-db", "logs-web"]
    assert await names(api, filter="state = draft AND state = ACTIVE") == []
    assert await names(api, filter='labels.team = "web"') == ["logs-web", "metrics"]
    assert await names(api, filter="labels.team = web AND labels.env = prod") == ["logs-web"]
    assert await names(api, filter="labels.missing = x") == []
    assert await names(api, filter='name = "logs*"') == ["logs-db", "logs-web"]
    assert await names(api, filter='name = "logs-*"') == ["logs-db", "logs-web"]
    assert await names(api, filter="name = logs-db") == ["logs-db"]
    assert await names(api, filter='name = "logs"') == []
    assert await names(api, filter='name = "*"') == ["logs-db", "logs-web", "metrics"]
    assert await names(api, filter='name = "logs*" AND labels.team = web') == ["logs-web"]
    # DELETED datasets show only when asked for.
    assert await names(api, show_deleted=True) == ["logs-db", "logs-web", "logs_old", "metrics"]
    assert await names(api, filter="state = DELETED") == ["logs_old"]
    assert await names(api, filter='name = "logs*"', show_deleted=True, order_by="name desc") == [
        "logs_old", "logs-web", "logs-db"]
    deleted = (await list_all(api, filter="state = DELETED"))[0]
    assert deleted.state == DELETED and deleted.HasField("delete_time")


async def test_bad_list_requests(api: Api, server_file: ServerHandle) -> None:
    for name in ["a", "b", "c"]:
        await create(api, name)

    async def bad(reason: str, field: str, **request: Any) -> None:
        error = await fails(api.datasets.ListDatasets(pb.ListDatasetsRequest(**request)),
                            grpc.StatusCode.INVALID_ARGUMENT, reason)
        assert field_violations(error) == [field]

    await bad("INVALID_FILTER", "filter", filter="colour = red")
    await bad("INVALID_FILTER", "filter", filter="state = ACTIVE AND owner = me")
    await bad("INVALID_FILTER", "filter", filter="labels = x")
    await bad("INVALID_FILTER", "filter", filter="state = SHINY")
    await bad("INVALID_FILTER", "filter", filter="state != ACTIVE")
    await bad("INVALID_FILTER", "filter", filter="name =")
    await bad("INVALID_FILTER", "filter", filter='name = "a*b"')
    await bad("INVALID_FILTER", "filter", filter='name = "UPPER*"')
    await bad("INVALID_ORDER_BY", "order_by", order_by="create_time")
    await bad("INVALID_ORDER_BY", "order_by", order_by="name asc")
    await bad("INVALID_ORDER_BY", "order_by", order_by="name, update_time")
    await bad("INVALID_PAGE_SIZE", "page_size", page_size=-1)
    await bad("INVALID_ARGUMENT", "parent", parent="namespaces/")

    page = await api.datasets.ListDatasets(pb.ListDatasetsRequest(page_size=1))
    token = page.next_page_token
    assert token
    tampered = tampered_page_token(token)
    await bad("INVALID_PAGE_TOKEN", "page_token", page_size=1, page_token=tampered)
    await bad("INVALID_PAGE_TOKEN", "page_token", page_size=1, page_token=token[:10])
    await bad("INVALID_PAGE_TOKEN", "page_token", page_size=1, page_token="garbage!")
    # A good token replayed with a different filter, order or show_deleted is refused.
    await bad("INVALID_PAGE_TOKEN", "page_token", page_size=1, page_token=token, filter="state = DRAFT")
    await bad("INVALID_PAGE_TOKEN", "page_token", page_size=1, page_token=token, order_by="name desc")
    await bad("INVALID_PAGE_TOKEN", "page_token", page_size=1, page_token=token, show_deleted=True)
    # ... and so is a token another namespace was given.
    other = open_api(server_file.address)
    try:
        for name in ["x", "y"]:
            await create(other, name)
        theirs = (await other.datasets.ListDatasets(pb.ListDatasetsRequest(page_size=1))).next_page_token
        await bad("INVALID_PAGE_TOKEN", "page_token", page_size=1, page_token=theirs)
    finally:
        await other.channel.close()


async def test_paging_is_stable_under_concurrent_inserts(api: Api) -> None:
    """Paging through 1,000 datasets while another task inserts more, some of them before the pager's position
    (where an offset-based pager would see a row twice) and some after: no duplicates, and none that existed
    at the start is skipped."""
    initial = [f"d{uuid.uuid4().hex[:12]}" for _ in range(1000)]
    for start in range(0, len(initial), 100):
        await asyncio.gather(*(create(api, name) for name in initial[start:start + 100]))
    inserted: list[str] = []  # named before the insert is sent: the pager may see any of them
    cursors: list[str] = []  # the position each page request was sent with ("" for the first)
    # Each batch of inserts, with the number of page requests sent when it started and when it had committed.
    batches: list[tuple[list[str], int, int]] = []
    paging_done = asyncio.Event()

    async def insert_more() -> None:
        # Random names land before and after the pager's position alike.
        while not paging_done.is_set():
            batch = [f"d{uuid.uuid4().hex[:12]}" for _ in range(5)]
            inserted.extend(batch)
            started = len(cursors)
            await asyncio.gather(*(create(api, name) for name in batch))
            batches.append((batch, started, len(cursors)))

    inserter = asyncio.create_task(insert_more())
    seen: list[str] = []
    token = ""
    try:
        while True:
            cursors.append(seen[-1] if seen else "")
            page = await api.datasets.ListDatasets(pb.ListDatasetsRequest(page_size=17, page_token=token))
            seen += [d.name.rsplit("/", 1)[1] for d in page.datasets]
            token = page.next_page_token
            if not token:
                break
    finally:
        paging_done.set()
        await inserter
    # Behind: a name below the position of the request in flight when its insert began; no later request
    # (whose positions only grow) may return it. Ahead: committed before request k was sent, and above that
    # request's position; request k must find it.
    behind = [n for batch, started, _ in batches if 0 < started for n in batch if n < cursors[started - 1]]
    ahead = [n for batch, _, k in batches if k < len(cursors) for n in batch if n > cursors[k]]
    # The race this test is about happened: rows landed on both sides of the pager while it paged.
    assert behind and ahead, (len(behind), len(ahead))
    assert len(seen) == len(set(seen)), "a dataset appeared twice"
    assert set(initial) <= set(seen), "a dataset that existed at the start was skipped"
    assert set(seen) <= set(initial) | set(inserted)
    assert set(ahead) <= set(seen), "a dataset inserted ahead of the pager was missed"
    assert not set(behind) & set(seen), "a dataset inserted behind the pager was returned"
    assert seen == sorted(seen)


# --- update ----------------------------------------------------------------------------------------------


async def test_update_each_field(api: Api) -> None:
    created = await create(api, "upd", description="old", labels={"a": "1"}, rules=RULES)
    new_rules = dataset_pb2.DatasetRules(min_rows=1, allowed_formats=[common_pb2.FILE_FORMAT_JSONL])
    changed = dataset_pb2.Dataset(name=created.name, description="new", labels={"b": "2"}, rules=new_rules)

    described = (await api.datasets.UpdateDataset(update_request(changed, "description"))).dataset
    assert described.description == "new"
    assert dict(described.labels) == {"a": "1"} and described.rules == RULES  # not in the mask: untouched
    assert described.etag != created.etag and described.update_time.ToDatetime() > created.update_time.ToDatetime()
    assert described.create_time == created.create_time and described.uid == created.uid

    labelled = (await api.datasets.UpdateDataset(update_request(changed, "labels"))).dataset
    assert dict(labelled.labels) == {"b": "2"} and labelled.description == "new" and labelled.rules == RULES

    ruled = (await api.datasets.UpdateDataset(update_request(changed, "rules"))).dataset
    assert ruled.rules == new_rules
    assert await get(api, "upd") == ruled

    # Clearing: a field in the mask with an empty value becomes empty.
    cleared = (await api.datasets.UpdateDataset(update_request(dataset_pb2.Dataset(name=created.name),
                                                               "labels", "rules", "description"))).dataset
    assert cleared.description == "" and dict(cleared.labels) == {} and cleared.rules == dataset_pb2.DatasetRules()


async def test_update_mask_semantics(api: Api) -> None:
    created = await create(api, "mask", description="old", labels={"a": "1"}, rules=RULES)
    # Empty mask: every populated writable field (AIP-134); here only the description is populated.
    implied = (await api.datasets.UpdateDataset(update_request(
        dataset_pb2.Dataset(name=created.name, description="implied")))).dataset
    assert implied.description == "implied" and dict(implied.labels) == {"a": "1"} and implied.rules == RULES
    # An empty mask on a message that populates nothing changes nothing, not even the etag.
    same = (await api.datasets.UpdateDataset(update_request(dataset_pb2.Dataset(name=created.name)))).dataset
    assert same == implied
    # "*" replaces every writable field, unset ones included.
    replaced = (await api.datasets.UpdateDataset(update_request(
        dataset_pb2.Dataset(name=created.name, labels={"z": "9"}), "*"))).dataset
    assert replaced.description == "" and dict(replaced.labels) == {"z": "9"}
    assert replaced.rules == dataset_pb2.DatasetRules()
    # Output-only fields in the message are ignored.
    ignored = (await api.datasets.UpdateDataset(update_request(
        dataset_pb2.Dataset(name=created.name, description="x", state=DELETED, uid="nope"), "description"))).dataset
    assert ignored.state == DRAFT and ignored.uid == created.uid and ignored.description == "x"


@pytest.mark.parametrize("paths", [["state"], ["description", "colour"], ["name"], ["rules.min_rows"],
                                   ["*", "labels"], [""]])
async def test_unknown_update_mask_path(api: Api, paths: list[str]) -> None:
    created = await create(api, "masked", description="kept")
    error = await fails(api.datasets.UpdateDataset(update_request(
        dataset_pb2.Dataset(name=created.name, description="lost"), *paths)), grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_UPDATE_MASK")
    assert field_violations(error) == ["update_mask"]
    assert await get(api, "masked") == created


async def test_bad_update_values_change_nothing(api: Api) -> None:
    created = await create(api, "vals", labels={"a": "1"})
    for dataset, path, field, reason in [
        (dataset_pb2.Dataset(name=created.name, labels={"k": "v" * 64}), "labels", "dataset.labels[k]",
         "INVALID_LABELS"),
        (dataset_pb2.Dataset(name=created.name, description="d" * 16385), "description", "dataset.description",
         "INVALID_DESCRIPTION"),
        (dataset_pb2.Dataset(name=created.name, rules=dataset_pb2.DatasetRules(min_rows=-1)), "rules",
         "dataset.rules.min_rows", "INVALID_RULES"),
        (dataset_pb2.Dataset(name="nope", description="x"), "description", "dataset.name", "INVALID_NAME"),
    ]:
        error = await fails(api.datasets.UpdateDataset(update_request(dataset, path)),
                            grpc.StatusCode.INVALID_ARGUMENT, reason)
        assert field_violations(error) == [field]
    # A bad value of a field outside the mask is ignored, as AIP-134 says.
    kept = (await api.datasets.UpdateDataset(update_request(
        dataset_pb2.Dataset(name=created.name, description="ok", labels={"k": "v" * 64}), "description"))).dataset
    assert kept.description == "ok" and dict(kept.labels) == {"a": "1"}
    await fails(api.datasets.UpdateDataset(update_request(
        dataset_pb2.Dataset(name=f"{api.parent}/datasets/missing", description="x"), "description")),
        grpc.StatusCode.NOT_FOUND, "DATASET_NOT_FOUND")


async def test_stale_etag_is_aborted(api: Api) -> None:
    created = await create(api, "etag", description="v1")
    first = (await api.datasets.UpdateDataset(update_request(
        dataset_pb2.Dataset(name=created.name, description="v2", etag=created.etag), "description"))).dataset
    assert first.description == "v2" and first.etag != created.etag
    error = await fails(api.datasets.UpdateDataset(update_request(
        dataset_pb2.Dataset(name=created.name, description="v3", etag=created.etag), "description")),
        grpc.StatusCode.ABORTED, "ETAG_MISMATCH")
    assert error.code() == grpc.StatusCode.ABORTED
    await fails(api.datasets.DeleteDataset(pb.DeleteDatasetRequest(name=created.name, etag=created.etag)),
                grpc.StatusCode.ABORTED, "ETAG_MISMATCH")
    await fails(api.datasets.UpdateDataset(update_request(
        dataset_pb2.Dataset(name=created.name, description="v3", etag="garbage"), "description")),
        grpc.StatusCode.ABORTED, "ETAG_MISMATCH")
    assert await get(api, "etag") == first


async def test_concurrent_updates_with_one_etag_have_one_winner(api: Api, pool: asyncpg.Pool) -> None:
    created = await create(api, "race")
    calls = [api.datasets.UpdateDataset(update_request(
        dataset_pb2.Dataset(name=created.name, description=f"writer {i}", etag=created.etag), "description"))
        for i in range(8)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    won = [r.dataset for r in results if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, BaseException)]
    assert len(won) == 1
    for error in lost:
        assert isinstance(error, aio.AioRpcError) and error.code() == grpc.StatusCode.ABORTED
        assert error_info(error)[0] == "ETAG_MISMATCH"
    assert await get(api, "race") == won[0]
    assert [r["revision"] for r in await rows(pool, api.namespace)] == [2]


async def test_concurrent_updates_without_etag_all_apply(api: Api, pool: asyncpg.Pool) -> None:
    created = await create(api, "busy")
    calls = [api.datasets.UpdateDataset(update_request(
        dataset_pb2.Dataset(name=created.name, description=f"writer {i}"), "description")) for i in range(4)]
    results = await asyncio.gather(*calls)
    assert len({r.dataset.etag for r in results}) == 4
    assert [r["revision"] for r in await rows(pool, api.namespace)] == [5]


# --- delete ----------------------------------------------------------------------------------------------


async def test_delete_and_reuse_the_name(api: Api, pool: asyncpg.Pool) -> None:
    created = await create(api, "gone", description="old", labels={"a": "1"})
    deleted = (await api.datasets.DeleteDataset(pb.DeleteDatasetRequest(name=created.name,
                                                                        etag=created.etag))).dataset
    assert deleted.state == DELETED and deleted.HasField("delete_time")
    assert deleted.etag != created.etag and deleted.uid == created.uid and deleted.description == "old"
    await fails(api.datasets.GetDataset(pb.GetDatasetRequest(name=created.name)), grpc.StatusCode.NOT_FOUND,
                "DATASET_NOT_FOUND")
    await fails(api.datasets.DeleteDataset(pb.DeleteDatasetRequest(name=created.name)), grpc.StatusCode.NOT_FOUND,
                "DATASET_NOT_FOUND")
    await fails(api.datasets.UpdateDataset(update_request(dataset_pb2.Dataset(name=created.name, description="x"),
                                                          "description")),
                grpc.StatusCode.NOT_FOUND, "DATASET_NOT_FOUND")
    assert await names(api) == []

    reborn = await create(api, "gone", description="new")
    assert reborn.uid != created.uid and reborn.state == DRAFT and reborn.description == "new"
    assert await get(api, "gone") == reborn
    assert [d.uid for d in await list_all(api, show_deleted=True)] == sorted([created.uid, reborn.uid])
    states = sorted(r["state"] for r in await rows(pool, api.namespace))
    assert states == ["DELETED", "DRAFT"]
    # Deleting again with no etag works on the new one; both are now deleted and the name is free again.
    await api.datasets.DeleteDataset(pb.DeleteDatasetRequest(name=reborn.name))
    assert await names(api, filter="state = DELETED") == ["gone", "gone"]


async def test_delete_errors(api: Api) -> None:
    await fails(api.datasets.DeleteDataset(pb.DeleteDatasetRequest(name=f"{api.parent}/datasets/none")),
                grpc.StatusCode.NOT_FOUND, "DATASET_NOT_FOUND")
    error = await fails(api.datasets.DeleteDataset(pb.DeleteDatasetRequest(name="gone")),
                        grpc.StatusCode.INVALID_ARGUMENT, "INVALID_NAME")
    assert field_violations(error) == ["name"]
