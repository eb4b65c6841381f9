"""The use cases, as one object the API and the workers are given (built by `server/composition.py`)."""

from __future__ import annotations

from dataclasses import dataclass

from server.domain.admission import Admission
from server.domain.audit import AuditTrail
from server.domain.datasets import Datasets
from server.domain.files import Files
from server.domain.inline import InlineWrites
from server.domain.lifecycle import Lifecycle
from server.domain.namespaces import Namespaces
from server.domain.pipeline import Pipeline
from server.domain.registration import Registrations
from server.domain.rowdiff import RowDiffs
from server.domain.sweep import Sweeper
from server.domain.tables import Tables
from server.domain.tokens import Tokens
from server.domain.upload_stream import UploadStream
from server.domain.uploads import Uploads
from server.domain.versions import Versions
from server.storage.db import Database


@dataclass
class Services:
    """Every use case the API and the workers call."""

    db: Database
    uploads: Uploads
    upload_stream: UploadStream
    datasets: Datasets
    versions: Versions
    files: Files
    pipeline: Pipeline
    sweeper: Sweeper
    tables: Tables
    row_diffs: RowDiffs
    namespaces: Namespaces
    tokens: Tokens
    audit: AuditTrail
    admission: Admission
    lifecycle: Lifecycle
    inline: InlineWrites
    registrations: Registrations
