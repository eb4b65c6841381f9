"""The first operator token of a deployment, and the credentials file the SDK and CLI read it from.

`quarry admin bootstrap` issues it for an empty database (and refuses when a live operator token exists);
`quarry dev` does the same on its first start and writes the token to `<data dir>/credentials` and, when that
file does not exist (or an earlier `quarry dev` wrote it), to the user's credentials file, so the quick start
needs no extra step. A credentials file is TOML, mode 0600:

    # Quarry credentials, written by `quarry dev` for 127.0.0.1:50051 (data directory …)
    token = "qk_<id>_<secret>"
    address = "127.0.0.1:50051"
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from server.domain.tokens import bootstrap
from server.model.errors import ConfigError
from server.model.identity import IssuedToken
from server.settings import Settings
from server.storage import db
from server.storage.migrate import migrate

WRITTEN_BY_DEV = "written by `quarry dev`"


async def bootstrap_operator(settings: Settings, principal: str) -> IssuedToken:
    """Apply pending migrations, then issue the first operator token (and create the default namespace)."""
    connection = await db.connect(settings.database_url, settings.startup_timeout_seconds)
    try:
        await migrate(connection)
    finally:
        await connection.close()
    async with db.pool_of(settings.database_url, settings.startup_timeout_seconds, max_size=2) as pool:
        return await bootstrap(db.Database(pool), principal, settings.default_namespace)


def user_credentials_path(environ: dict[str, str] | None = None) -> Path:
    """QUARRY_CREDENTIALS, else ~/.config/quarry/credentials (XDG_CONFIG_HOME respected): where clients look."""
    env = os.environ if environ is None else environ
    explicit = env.get("QUARRY_CREDENTIALS")
    if explicit:
        return Path(explicit).expanduser()
    config = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "quarry" / "credentials"


def credentials_text(token: str, comment: str, address: str | None = None) -> str:
    """The content of a credentials file: a comment line, the token, and the server it is for (clients send
    the token to that server only)."""
    text = f"# {comment}\ntoken = \"{token}\"\n"
    return text + (f"address = \"{address}\"\n" if address else "")


def write_credentials(path: Path, text: str) -> None:
    """Write a credentials file readable by its owner only (created 0600, never briefly wider)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


def read_token(path: Path) -> str | None:
    """The token of a credentials file, or None when there is no readable one."""
    try:
        return str(tomllib.loads(path.read_text())["token"])
    except (OSError, ValueError, KeyError):
        return None


def ensure_user_credentials(data_credentials: Path, user_path: Path) -> Path | None:
    """Copy the data directory's credentials to the user's file unless the user wrote that file themselves
    (one `quarry dev` wrote is replaced: it may hold the token of a data directory since deleted). Returns the
    path written, if any."""
    if not data_credentials.exists():
        return None
    if user_path.exists():
        try:
            if WRITTEN_BY_DEV not in user_path.read_text():
                return None
        except OSError:
            return None
        if user_path.read_text() == data_credentials.read_text():
            return None
    try:
        write_credentials(user_path, data_credentials.read_text())
    except OSError as exc:
        raise ConfigError("QUARRY_CREDENTIALS", f"cannot write {user_path}: {exc.strerror or exc}") from None
    return user_path
