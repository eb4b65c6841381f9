-- Clones, undelete and inline files.
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
