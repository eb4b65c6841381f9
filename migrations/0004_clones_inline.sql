-- Clones, undelete, inline files, Parquet renditions and registered files.
--
-- A clone's versions list the same content-addressed objects as its source (nothing is copied), so an object
-- outlives the dataset that first stored it: its row keeps the namespace that stored it (quotas) and forgets
-- the dataset once the sweep purges that dataset.
ALTER TABLE fresh_objects ALTER COLUMN dataset_id DROP NOT NULL;
ALTER TABLE fresh_objects DROP CONSTRAINT fresh_objects_dataset_id_fkey;
ALTER TABLE fresh_objects ADD CONSTRAINT fresh_objects_dataset_id_fkey
    FOREIGN KEY (dataset_id) REFERENCES datasets (id) ON DELETE SET NULL;

-- Version 1 of a clone names the version it was cloned from (text: the source may be purged later).
ALTER TABLE versions ADD COLUMN cloned_from text NOT NULL DEFAULT '' CHECK (length(cloned_from) <= 1024);

-- The sweep finds deleted datasets past their retention by delete time.
CREATE INDEX datasets_deleted ON datasets (delete_time) WHERE state = 'DELETED';

-- Small files written by WriteFile live here instead of the object store, keyed like the objects they stand
-- for ("inline/{namespace}/{sha256}"); a row of fresh_objects owns each, and the collector's delete of that row
-- takes the content with it.
CREATE TABLE inline_objects (
    key     text PRIMARY KEY REFERENCES fresh_objects (key) ON DELETE CASCADE CHECK (key ~ '^inline/'),
    content bytea NOT NULL
);

-- A CSV or JSON Lines file of a dataset with the rule normalize_to_parquet has a Parquet rendition, written at
-- promotion into fresh storage (content-addressed like any object) and listed beside the file it renders.
ALTER TABLE version_files
    ADD COLUMN rendition_key    text REFERENCES fresh_objects (key),
    ADD COLUMN rendition_size   bigint CHECK (rendition_size >= 0),
    ADD COLUMN rendition_sha256 text CHECK (rendition_sha256 ~ '^[0-9a-f]{64}$'),
    ADD CONSTRAINT version_files_rendition_whole
        CHECK ((rendition_key IS NULL) = (rendition_size IS NULL) AND (rendition_key IS NULL) = (rendition_sha256 IS NULL));
CREATE INDEX version_files_by_rendition ON version_files (rendition_key) WHERE rendition_key IS NOT NULL;

-- Registered files (RegisterFiles): a version's file may point at an object outside Quarry's store. Its row in
-- fresh_objects (key "external/{sha256}/{hash of the uri}") says where it is and what pins its bytes: the ETag
-- (and version id) S3 gave, or a local file's size and modification time. The collector deletes only the row.
ALTER TABLE fresh_objects
    ADD COLUMN external_uri     text CHECK (length(external_uri) <= 2048),
    ADD COLUMN external_etag    text,
    ADD COLUMN external_version text,
    ADD CONSTRAINT fresh_objects_external CHECK ((key ~ '^external/') = (external_uri IS NOT NULL)),
    ADD CONSTRAINT fresh_objects_external_pinned CHECK (external_uri IS NULL OR external_etag IS NOT NULL);

-- The registration a version is built from (source, filters, copy or not); NULL for every other version.
ALTER TABLE versions ADD COLUMN registration jsonb CHECK (registration IS NULL OR jsonb_typeof(registration) = 'object');
