"""Keep secrets out of messages: passwords in URLs and token secrets become `***`.

Used wherever text that may hold a secret leaves the process: configuration errors, start-up failures, and
every log record (a filter in `server/logs.py`).
"""

from __future__ import annotations

import re

# scheme://user:password@host → scheme://user:***@host (also redis://:password@host)
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*):(?P<password>[^/\s]+)@")
# qk_<id>_<secret> → qk_<id>_***
_TOKEN_SECRET = re.compile(r"\b(qk_[0-9a-f]{16}_)[A-Za-z0-9_-]+")
# password=… in a query string or a libpq keyword string
_PASSWORD_PARAMETER = re.compile(r"(?i)\b(password|passwd|secret|secret_access_key)=([^&\s]+)")


def redact(text: str) -> str:
    """`text` with URL passwords, password parameters and token secrets replaced by ***."""
    text = _URL_PASSWORD.sub(r"\g<head>:***@", text)
    text = _PASSWORD_PARAMETER.sub(r"\1=***", text)
    return _TOKEN_SECRET.sub(r"\1***", text)
