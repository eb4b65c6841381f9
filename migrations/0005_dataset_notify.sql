-- Every replica caches GetDataset's rows (server/domain/datasets.py); any insert, update or delete of a dataset
-- row is announced ("namespaces/{namespace}/datasets/{name}", its resource name) so each drops its copy at once.
-- Namespaces are never deleted, so the row's namespace is always there to name it.
CREATE FUNCTION notify_dataset_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed datasets;
BEGIN
    IF TG_OP = 'DELETE' THEN
        changed := OLD;
    ELSE
        changed := NEW;
    END IF;
    PERFORM pg_notify('quarry_dataset', 'namespaces/' || n.name || '/datasets/' || changed.name)
        FROM namespaces n WHERE n.id = changed.namespace_id;
    IF TG_OP = 'UPDATE' AND (OLD.name, OLD.namespace_id) IS DISTINCT FROM (NEW.name, NEW.namespace_id) THEN
        PERFORM pg_notify('quarry_dataset', 'namespaces/' || n.name || '/datasets/' || OLD.name)
            FROM namespaces n WHERE n.id = OLD.namespace_id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER datasets_changed AFTER INSERT OR UPDATE OR DELETE ON datasets
    FOR EACH ROW EXECUTE FUNCTION notify_dataset_changed();
