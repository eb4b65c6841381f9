"""Where the token comes from: `token=` (`--token`), else QUARRY_TOKEN, else a credentials file.

The credentials file is QUARRY_CREDENTIALS, else `$XDG_CONFIG_HOME/quarry/credentials` (default
`~/.config/quarry/credentials`), which `quarry dev` writes. It is TOML:

    token = "qk_<id>_<secret>"      # required
    address = "127.0.0.1:50051"     # optional: the server the token is for (and the default address)
    namespace = "team-a"            # optional: the default namespace

A file that names an address gives its token to that server only, so a token written for one server is
never sent to another. Tokens never appear in an error message.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from quarry._exceptions import UsageError

__all__ = ["CredentialsFile", "check_token", "credentials_path", "read_credentials"]

_TOKEN = re.compile(r"^qk_[0-9a-f]{16}_[A-Za-z0-9_-]{43,128}$")


@dataclass(frozen=True)
class CredentialsFile:
    """What a credentials file holds."""

    path: Path
    token: str = field(repr=False)
    address: str | None = None
    namespace: str | None = None


def credentials_path() -> Path:
    """QUARRY_CREDENTIALS, else the per-user configuration directory plus quarry/credentials."""
    explicit = os.environ.get("QUARRY_CREDENTIALS")
    if explicit:
        return Path(explicit).expanduser()
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "quarry" / "credentials"


def check_token(token: str, source: str) -> str:
    """The token, once it looks like one; UsageError naming where it came from (never the token) otherwise."""
    token = token.strip()
    if not _TOKEN.match(token):
        raise UsageError(f"{source} does not hold a Quarry token (expected qk_<id>_<secret>)")
    return token


def read_credentials(path: Path) -> CredentialsFile | None:
    """The credentials file at `path`, or None when there is none; UsageError when it cannot be used."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UsageError(f"cannot read the credentials file {path}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        raise UsageError(f"the credentials file {path} is not TOML (expected a line `token = \"qk_...\"`)") from None
    values = {key: data.get(key) for key in ("token", "address", "namespace")}
    if not isinstance(values["token"], str) or any(v is not None and not isinstance(v, str) for v in values.values()):
        raise UsageError(f"the credentials file {path} needs `token = \"qk_...\"` (and string address, namespace)")
    return CredentialsFile(path, check_token(values["token"], f"the credentials file {path}"),
                           values["address"], values["namespace"])
