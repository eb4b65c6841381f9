-- Identity: tokens and their grants, quotas per namespace, and an append-only audit trail.

-- A namespace now exists only when an operator creates it, with limits of its own (0: none of its own).
ALTER TABLE namespaces
    ADD COLUMN max_bytes           bigint NOT NULL DEFAULT 0 CHECK (max_bytes >= 0),
    ADD COLUMN max_open_uploads    integer NOT NULL DEFAULT 0 CHECK (max_open_uploads >= 0),
    ADD COLUMN max_datasets        integer NOT NULL DEFAULT 0 CHECK (max_datasets >= 0),
    ADD COLUMN requests_per_second double precision NOT NULL DEFAULT 0
        CHECK (requests_per_second >= 0 AND requests_per_second <= 1000000),
    ADD COLUMN revision            bigint NOT NULL DEFAULT 1 CHECK (revision > 0),
    ADD COLUMN request_id          text,
    ADD COLUMN update_time         timestamptz NOT NULL DEFAULT now();
CREATE UNIQUE INDEX namespaces_request_id ON namespaces (request_id) WHERE request_id IS NOT NULL;

-- Quota checks sum what a namespace stores: its fresh objects, and the parts of uploads whose staged bytes
-- are not purged yet.
CREATE INDEX fresh_objects_by_namespace ON fresh_objects (namespace_id);
CREATE INDEX uploads_unpurged_by_namespace ON uploads (namespace_id) WHERE purge_time IS NULL;
CREATE INDEX datasets_live_by_namespace ON datasets (namespace_id) WHERE state <> 'DELETED';

-- A token is `qk_<id>_<secret>`: only the secret's SHA-256 is kept. A token never changes once issued, except
-- that it can be revoked (once) and that its last use is recorded.
CREATE TABLE tokens (
    id            text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{16}$'),
    secret_sha256 text NOT NULL CHECK (secret_sha256 ~ '^[0-9a-f]{64}$'),
    principal     text NOT NULL CHECK (length(principal) BETWEEN 1 AND 128),
    operator      boolean NOT NULL DEFAULT false,
    creator       text NOT NULL DEFAULT '',
    request_id    text,
    create_time   timestamptz NOT NULL DEFAULT now(),
    expire_time   timestamptz,
    revoke_time   timestamptz,
    last_use_time timestamptz,
    CHECK (expire_time IS NULL OR expire_time > create_time)
);
CREATE UNIQUE INDEX tokens_request_id ON tokens (creator, request_id) WHERE request_id IS NOT NULL;
CREATE INDEX tokens_by_create_time ON tokens (create_time DESC, id DESC);

-- Grants in the order they were given: the first names the namespace a call acts in when it names none.
CREATE TABLE token_grants (
    token_id     text NOT NULL REFERENCES tokens (id),
    position     smallint NOT NULL CHECK (position >= 0),
    namespace_id uuid NOT NULL REFERENCES namespaces (id),
    role         text NOT NULL CHECK (role IN ('reader', 'writer', 'admin')),
    PRIMARY KEY (token_id, namespace_id),
    UNIQUE (token_id, position)
);
CREATE INDEX token_grants_by_namespace ON token_grants (namespace_id, token_id);

CREATE FUNCTION tokens_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id IS DISTINCT FROM OLD.id OR NEW.secret_sha256 IS DISTINCT FROM OLD.secret_sha256
       OR NEW.principal IS DISTINCT FROM OLD.principal OR NEW.operator IS DISTINCT FROM OLD.operator
       OR NEW.creator IS DISTINCT FROM OLD.creator OR NEW.create_time IS DISTINCT FROM OLD.create_time
       OR NEW.expire_time IS DISTINCT FROM OLD.expire_time
       OR (OLD.revoke_time IS NOT NULL AND NEW.revoke_time IS DISTINCT FROM OLD.revoke_time) THEN
        RAISE EXCEPTION 'a token cannot change once issued (only revoked, once)' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER tokens_immutable BEFORE UPDATE ON tokens FOR EACH ROW EXECUTE FUNCTION tokens_immutable();
CREATE FUNCTION token_grants_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the grants of a token cannot change once issued' USING ERRCODE = 'integrity_constraint_violation';
END $$;
CREATE TRIGGER token_grants_immutable BEFORE UPDATE ON token_grants
    FOR EACH ROW EXECUTE FUNCTION token_grants_immutable();

-- Every replica caches token look-ups; a revocation is announced ("{token id}") so each drops its copy at once.
CREATE FUNCTION notify_token_revoked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('quarry_token', NEW.id);
    RETURN NULL;
END $$;
CREATE TRIGGER tokens_revoked AFTER UPDATE OF revoke_time ON tokens
    FOR EACH ROW WHEN (OLD.revoke_time IS DISTINCT FROM NEW.revoke_time) EXECUTE FUNCTION notify_token_revoked();

-- Replicas cache namespace limits too; a change is announced ("{namespace name}").
CREATE FUNCTION notify_namespace_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('quarry_namespace', NEW.name);
    RETURN NULL;
END $$;
CREATE TRIGGER namespaces_changed AFTER UPDATE ON namespaces
    FOR EACH ROW WHEN (OLD.revision IS DISTINCT FROM NEW.revision) EXECUTE FUNCTION notify_namespace_changed();

-- One row per mutating call and per denied call. Append-only: no UPDATE ever; a DELETE only from the retention
-- sweep, which names its cut-off for its own transaction (SET LOCAL quarry.audit_cutoff), and only of older rows.
CREATE TABLE audit_events (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_time timestamptz NOT NULL DEFAULT clock_timestamp(),
    principal  text NOT NULL DEFAULT '',
    token_id   text,
    namespace  text NOT NULL DEFAULT '',
    method     text NOT NULL,
    resource   text NOT NULL DEFAULT '',
    code       text NOT NULL,
    reason     text NOT NULL DEFAULT '',
    request_id text NOT NULL DEFAULT '',
    peer       text NOT NULL DEFAULT ''
);
CREATE INDEX audit_events_by_namespace ON audit_events (namespace, id DESC);
CREATE INDEX audit_events_by_time ON audit_events (event_time);

CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    cutoff text := current_setting('quarry.audit_cutoff', true);
BEGIN
    IF TG_OP = 'DELETE' AND coalesce(cutoff, '') <> '' AND OLD.event_time < cutoff::timestamptz THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit events are append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();

CREATE FUNCTION audit_events_no_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only (TRUNCATE refused)' USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_no_truncate();
