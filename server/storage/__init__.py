"""Storage: Postgres repositories, object stores and the job queue."""
