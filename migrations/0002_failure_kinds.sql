-- A stored failure records its error kind (ErrorKind: INVALID_ARGUMENT, NOT_FOUND, ...) instead of the name of
-- the Python class that raised it, so renaming a class can no longer turn old failures into INTERNAL.
CREATE FUNCTION pg_temp.failure_kind(kind text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE kind
        WHEN 'InvalidArgument' THEN 'INVALID_ARGUMENT'
        WHEN 'InvalidFile' THEN 'INVALID_ARGUMENT'
        WHEN 'NotFound' THEN 'NOT_FOUND'
        WHEN 'AlreadyExists' THEN 'ALREADY_EXISTS'
        WHEN 'PermissionDenied' THEN 'PERMISSION_DENIED'
        WHEN 'FailedPrecondition' THEN 'FAILED_PRECONDITION'
        WHEN 'WrongOffset' THEN 'FAILED_PRECONDITION'
        WHEN 'WrongState' THEN 'FAILED_PRECONDITION'
        WHEN 'BaseMoved' THEN 'FAILED_PRECONDITION'
        WHEN 'RuleViolation' THEN 'FAILED_PRECONDITION'
        WHEN 'OutOfRange' THEN 'OUT_OF_RANGE'
        WHEN 'DataLoss' THEN 'DATA_LOSS'
        WHEN 'ChecksumMismatch' THEN 'DATA_LOSS'
        WHEN 'ResourceExhausted' THEN 'RESOURCE_EXHAUSTED'
        WHEN 'Aborted' THEN 'ABORTED'
        WHEN 'Unavailable' THEN 'UNAVAILABLE'
        WHEN 'NotSupported' THEN 'NOT_SUPPORTED'
        ELSE 'INTERNAL'
    END
$$;

UPDATE uploads SET failure = jsonb_set(failure, '{kind}', to_jsonb(pg_temp.failure_kind(failure->>'kind')))
WHERE failure IS NOT NULL;
UPDATE versions SET failure = jsonb_set(failure, '{kind}', to_jsonb(pg_temp.failure_kind(failure->>'kind')))
WHERE failure IS NOT NULL;
DROP FUNCTION pg_temp.failure_kind(text);

-- From now on a kind is one of the ErrorKind values.
ALTER TABLE uploads ADD CONSTRAINT uploads_failure_kind CHECK (failure IS NULL OR failure->>'kind' IN (
    'INVALID_ARGUMENT', 'NOT_FOUND', 'ALREADY_EXISTS', 'PERMISSION_DENIED', 'FAILED_PRECONDITION', 'OUT_OF_RANGE',
    'DATA_LOSS', 'RESOURCE_EXHAUSTED', 'ABORTED', 'UNAVAILABLE', 'NOT_SUPPORTED', 'INTERNAL'));
ALTER TABLE versions ADD CONSTRAINT versions_failure_kind CHECK (failure IS NULL OR failure->>'kind' IN (
    'INVALID_ARGUMENT', 'NOT_FOUND', 'ALREADY_EXISTS', 'PERMISSION_DENIED', 'FAILED_PRECONDITION', 'OUT_OF_RANGE',
    'DATA_LOSS', 'RESOURCE_EXHAUSTED', 'ABORTED', 'UNAVAILABLE', 'NOT_SUPPORTED', 'INTERNAL'));
