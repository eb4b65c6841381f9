-- The whole metadata schema of DESIGN.md: namespaces, datasets, versions, version files, fresh objects,
-- uploads and their parts. Constraints keep it honest; triggers NOTIFY every state change.

CREATE TABLE namespaces (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    create_time timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE datasets (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    namespace_id       uuid NOT NULL REFERENCES namespaces (id),
    name               text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    description        text NOT NULL DEFAULT '' CHECK (length(description) <= 16384),
    labels             jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(labels) = 'object'),
    rules              jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(rules) = 'object'),
    state              text NOT NULL DEFAULT 'DRAFT' CHECK (state IN ('DRAFT', 'ACTIVE', 'DELETED')),
    current_version_id uuid,
    request_id         text,
    revision           bigint NOT NULL DEFAULT 1 CHECK (revision > 0),
    create_time        timestamptz NOT NULL DEFAULT now(),
    update_time        timestamptz NOT NULL DEFAULT now(),
    delete_time        timestamptz,
    CHECK ((state = 'DELETED') = (delete_time IS NOT NULL))
);
-- A name is unique among the live datasets of a namespace; a deleted dataset frees its name.
CREATE UNIQUE INDEX datasets_live_name ON datasets (namespace_id, name) WHERE state <> 'DELETED';
CREATE UNIQUE INDEX datasets_request_id ON datasets (namespace_id, request_id) WHERE request_id IS NOT NULL;
CREATE INDEX datasets_by_name ON datasets (namespace_id, name, id);
CREATE INDEX datasets_by_update_time ON datasets (namespace_id, update_time, id);

CREATE TABLE versions (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    dataset_id   uuid NOT NULL REFERENCES datasets (id),
    -- Assigned in the transaction that makes the version READY, so READY numbers have no gaps.
    number       integer CHECK (number > 0),
    base_id      uuid REFERENCES versions (id),
    parent_id    uuid REFERENCES versions (id),
    message      text NOT NULL DEFAULT '' CHECK (length(message) <= 16384),
    state        text NOT NULL DEFAULT 'PENDING'
                 CHECK (state IN ('PENDING', 'VALIDATING', 'PROMOTING', 'READY', 'FAILED')),
    failure      jsonb,
    author       text NOT NULL DEFAULT '',
    request_id   text,
    delete_paths text[] NOT NULL DEFAULT '{}',
    file_count   bigint NOT NULL DEFAULT 0 CHECK (file_count >= 0),
    total_bytes  bigint NOT NULL DEFAULT 0 CHECK (total_bytes >= 0),
    total_rows   bigint NOT NULL DEFAULT 0 CHECK (total_rows >= 0),
    create_time  timestamptz NOT NULL DEFAULT now(),
    update_time  timestamptz NOT NULL DEFAULT now(),
    ready_time   timestamptz,
    UNIQUE (dataset_id, number),
    CHECK ((state = 'READY') = (number IS NOT NULL)),
    CHECK ((state = 'READY') = (ready_time IS NOT NULL)),
    CHECK ((state = 'FAILED') = (failure IS NOT NULL))
);
CREATE UNIQUE INDEX versions_request_id ON versions (dataset_id, request_id) WHERE request_id IS NOT NULL;
CREATE INDEX versions_by_state ON versions (state, update_time) WHERE state NOT IN ('READY', 'FAILED');

ALTER TABLE datasets ADD CONSTRAINT datasets_current_version_fk
    FOREIGN KEY (current_version_id) REFERENCES versions (id);
ALTER TABLE datasets ADD CONSTRAINT datasets_active_has_version
    CHECK (state <> 'ACTIVE' OR current_version_id IS NOT NULL);

-- Content-addressed objects in fresh storage. A row is written (or touched) before its object is copied,
-- and the garbage collector deletes an object while holding its row's lock, so the two never race.
CREATE TABLE fresh_objects (
    key          text PRIMARY KEY,
    namespace_id uuid NOT NULL REFERENCES namespaces (id),
    dataset_id   uuid NOT NULL REFERENCES datasets (id),
    sha256       text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    size_bytes   bigint NOT NULL CHECK (size_bytes >= 0),
    create_time  timestamptz NOT NULL DEFAULT now(),
    touch_time   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE uploads (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    namespace_id    uuid NOT NULL REFERENCES namespaces (id),
    dataset_id      uuid NOT NULL REFERENCES datasets (id),
    path            text NOT NULL CHECK (
                        length(path) BETWEEN 1 AND 1024
                        AND path !~ '^/' AND path !~ '/$' AND path !~ '//'
                        AND path !~ '(^|/)\.\.?(/|$)'),
    declared_size   bigint CHECK (declared_size >= 0),
    declared_sha256 text CHECK (declared_sha256 ~ '^[0-9a-f]{64}$'),
    content_type    text NOT NULL DEFAULT '' CHECK (length(content_type) <= 255),
    auto_commit     boolean NOT NULL DEFAULT false,
    commit_message  text NOT NULL DEFAULT '' CHECK (length(commit_message) <= 16384),
    state           text NOT NULL DEFAULT 'OPEN' CHECK (state IN (
                        'OPEN', 'STAGED', 'VALIDATING', 'VALIDATED', 'PROMOTED', 'FAILED', 'CANCELLED', 'EXPIRED')),
    part_size       bigint NOT NULL CHECK (part_size > 0),
    staging_key     text NOT NULL UNIQUE,
    store_upload_id text,
    size_bytes      bigint CHECK (size_bytes >= 0),
    sha256          text CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    failure         jsonb,
    version_id      uuid REFERENCES versions (id),
    request_id      text,
    attempts        integer NOT NULL DEFAULT 0,
    -- What validation found, copied into version_files at promotion.
    format          text CHECK (format IN ('CSV', 'JSONL', 'PARQUET', 'TEXT', 'BINARY')),
    columns         jsonb,
    arrow_schema    bytea,
    row_count       bigint CHECK (row_count >= 0),
    report          jsonb,
    stats           jsonb,
    expire_time     timestamptz NOT NULL,
    -- Set once the staged bytes of a CANCELLED or EXPIRED upload are gone; the sweep retries until then.
    purge_time      timestamptz,
    create_time     timestamptz NOT NULL DEFAULT now(),
    update_time     timestamptz NOT NULL DEFAULT now(),
    CHECK ((state = 'FAILED') = (failure IS NOT NULL)),
    CHECK (state IN ('OPEN', 'FAILED', 'CANCELLED', 'EXPIRED') OR size_bytes IS NOT NULL),
    CHECK (declared_size IS NULL OR size_bytes IS NULL OR size_bytes = declared_size),
    CHECK (state NOT IN ('VALIDATED', 'PROMOTED') OR format IS NOT NULL)
);
CREATE UNIQUE INDEX uploads_request_id ON uploads (namespace_id, request_id) WHERE request_id IS NOT NULL;
CREATE INDEX uploads_open ON uploads (namespace_id) WHERE state = 'OPEN';
CREATE INDEX uploads_by_create_time ON uploads (namespace_id, create_time DESC, id DESC);
CREATE INDEX uploads_by_state ON uploads (state, update_time);
CREATE INDEX uploads_by_version ON uploads (version_id) WHERE version_id IS NOT NULL;

CREATE TABLE upload_parts (
    upload_id    uuid NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
    number       integer NOT NULL CHECK (number BETWEEN 1 AND 10000),
    offset_bytes bigint NOT NULL CHECK (offset_bytes >= 0),
    size_bytes   bigint NOT NULL CHECK (size_bytes > 0),
    etag         text NOT NULL,
    crc32c       bigint NOT NULL CHECK (crc32c BETWEEN 0 AND 4294967295),
    create_time  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (upload_id, number)
);

CREATE TABLE version_files (
    version_id   uuid NOT NULL REFERENCES versions (id),
    path         text NOT NULL CHECK (length(path) BETWEEN 1 AND 1024),
    object_key   text NOT NULL REFERENCES fresh_objects (key),
    upload_id    uuid REFERENCES uploads (id),
    size_bytes   bigint NOT NULL CHECK (size_bytes >= 0),
    sha256       text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    format       text NOT NULL CHECK (format IN ('CSV', 'JSONL', 'PARQUET', 'TEXT', 'BINARY')),
    content_type text NOT NULL DEFAULT '',
    columns      jsonb NOT NULL DEFAULT '[]',
    arrow_schema bytea,
    row_count    bigint NOT NULL DEFAULT 0 CHECK (row_count >= 0),
    report       jsonb NOT NULL DEFAULT '{}',
    stats        jsonb NOT NULL DEFAULT '[]',
    PRIMARY KEY (version_id, path)
);
CREATE INDEX version_files_by_object ON version_files (object_key);

-- Secrets shared by every server replica (e.g. the key that signs page tokens).
CREATE TABLE server_secrets (
    name  text PRIMARY KEY,
    value text NOT NULL
);
INSERT INTO server_secrets (name, value)
VALUES ('page_token_key', encode(sha256(convert_to(gen_random_uuid()::text || clock_timestamp()::text, 'UTF8')), 'hex'));

-- Every state change is announced ("{id}:{state}"), so WatchUpload works across server replicas and sees
-- every state, even when several changes land between two reads.
CREATE FUNCTION notify_upload_state() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('quarry_upload_state', NEW.id::text || ':' || NEW.state);
    RETURN NULL;
END $$;

CREATE TRIGGER uploads_state_insert AFTER INSERT ON uploads
    FOR EACH ROW EXECUTE FUNCTION notify_upload_state();
CREATE TRIGGER uploads_state_update AFTER UPDATE OF state ON uploads
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state) EXECUTE FUNCTION notify_upload_state();

CREATE FUNCTION notify_version_state() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('quarry_version_state', NEW.id::text || ':' || NEW.state);
    RETURN NULL;
END $$;

CREATE TRIGGER versions_state_insert AFTER INSERT ON versions
    FOR EACH ROW EXECUTE FUNCTION notify_version_state();
CREATE TRIGGER versions_state_update AFTER UPDATE OF state ON versions
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state) EXECUTE FUNCTION notify_version_state();
