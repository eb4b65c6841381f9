"""Ordered SQL migrations: `NNNN_name.sql`, applied once each by `server.storage.migrate`."""
