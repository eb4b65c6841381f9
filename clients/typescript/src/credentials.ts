/**
 * Where the token comes from: the `token` option, else QUARRY_TOKEN, else a credentials file — the same
 * rules and the same file as the Python SDK and CLI (`quarry dev` writes it).
 *
 * The credentials file is QUARRY_CREDENTIALS, else `$XDG_CONFIG_HOME/quarry/credentials` (default
 * `~/.config/quarry/credentials`). It is TOML:
 *
 *     token = "qk_<id>_<secret>"      # required
 *     address = "127.0.0.1:50051"     # optional: the server the token is for (and the default address)
 *     namespace = "team-a"            # optional: the default namespace
 *
 * Only those `key = "string"` lines (and comments) are read here; anything else in the file is refused with a
 * message naming the file. Tokens never appear in an error message.
 */
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

import { UsageError } from "./errors.js";

const TOKEN = /^qk_[0-9a-f]{16}_[A-Za-z0-9_-]{43,128}$/;
const LINE = /^([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|'[^']*')\s*(?:#.*)?$/;

/** What a credentials file holds. */
export interface CredentialsFile {
  path: string;
  token: string;
  address?: string;
  namespace?: string;
}

type Env = Record<string, string | undefined>;

/** QUARRY_CREDENTIALS, else the per-user configuration directory plus quarry/credentials. */
export function credentialsPath(env: Env = process.env): string {
  const explicit = env["QUARRY_CREDENTIALS"];
  if (explicit) {
    return explicit.startsWith("~/") ? join(homedir(), explicit.slice(2)) : explicit;
  }
  return join(env["XDG_CONFIG_HOME"] || join(homedir(), ".config"), "quarry", "credentials");
}

/** The token, once it looks like one; UsageError naming where it came from (never the token) otherwise. */
export function checkToken(token: string, source: string): string {
  const trimmed = token.trim();
  if (!TOKEN.test(trimmed)) {
    throw new UsageError(`${source} does not hold a Quarry token (expected qk_<id>_<secret>)`);
  }
  return trimmed;
}

function unquote(text: string): string {
  // A TOML literal string has no escapes; a basic string's escapes (\n, \", \uXXXX, …) are JSON's.
  return text.startsWith("'") ? text.slice(1, -1) : JSON.parse(text) as string;
}

/** The credentials file at `path`, or undefined when there is none; UsageError when it cannot be used. */
export function readCredentials(path: string): CredentialsFile | undefined {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") {
      return undefined;
    }
    throw new UsageError(`cannot read the credentials file ${path}: ${(error as Error).message}`);
  }
  const values: Record<string, string> = {};
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) {
      continue;
    }
    const match = LINE.exec(line);
    let value: string | undefined;
    try {
      value = match ? unquote(match[2]!) : undefined;
    } catch {
      value = undefined;
    }
    if (match === null || value === undefined) {
      throw new UsageError(`the credentials file ${path} is not TOML this client reads (expected lines like `
        + "`token = \"qk_...\"`)");
    }
    values[match[1]!] = value;
  }
  if (values["token"] === undefined) {
    throw new UsageError(`the credentials file ${path} needs \`token = "qk_..."\` (and string address, namespace)`);
  }
  return { path, token: checkToken(values["token"], `the credentials file ${path}`), address: values["address"],
    namespace: values["namespace"] };
}
