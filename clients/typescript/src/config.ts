/**
 * The client's configuration: the only place it reads the environment. The same variables, defaults and
 * order as the Python SDK:
 *
 *     QUARRY_ADDRESS      the server: host:port, or grpcs://host:port for TLS (default 127.0.0.1:50051)
 *     QUARRY_NAMESPACE    namespace every call acts in (default: the credentials file's, else "default")
 *     QUARRY_TOKEN        the token to send (default: the credentials file's; see credentials.ts)
 *     QUARRY_CREDENTIALS  the credentials file (default ~/.config/quarry/credentials)
 *     QUARRY_CA_FILE      PEM CA bundle to trust for TLS (default: the system's)
 *     QUARRY_CERT_FILE    PEM client certificate, for servers that require one (mutual TLS)
 *     QUARRY_KEY_FILE     PEM private key of that certificate
 *     QUARRY_CACHE_DIR    where resumable upload state is kept (default: the per-user cache directory)
 *
 * Explicit options win over variables, variables over the credentials file, that over defaults.
 */
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

import { checkToken, credentialsPath, readCredentials } from "./credentials.js";
import { UsageError } from "./errors.js";
import { DEFAULT_RETRY, type RetryPolicy } from "./retry.js";

export const DEFAULT_ADDRESS = "127.0.0.1:50051";
export const DEFAULT_NAMESPACE = "default";
const NAMESPACE = /^[a-z0-9][a-z0-9._-]{0,62}$/;

/** What a QuarryClient is built from; every field is optional. */
export interface ClientOptions {
  /** host:port of the server, or grpcs://host:port for TLS. */
  address?: string;
  /** Namespace every call acts in. */
  namespace?: string;
  /** The token ("qk_<id>_<secret>") sent as `authorization: Bearer …` on every call. */
  token?: string;
  /** Speak TLS (default: what the address's scheme says, else whether a CA or certificate is given). */
  tls?: boolean;
  /** PEM files: a CA bundle to trust, and a client certificate with its key (mutual TLS). */
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  /** Where resumable upload state is kept. */
  cacheDir?: string;
  /** Retry policy of calls that are safe to repeat. */
  retry?: Partial<RetryPolicy>;
  /** Deadline of a unary call, in ms (default 30 s). */
  timeoutMs?: number;
  /** The environment to read QUARRY_* from (default process.env): tests pass their own. */
  env?: Record<string, string | undefined>;
}

/** Where the server is and how to reach it, who we are, which namespace to act in, where resume state
 * lives, how to retry. */
export interface Config {
  baseUrl: string;
  /** host:port, without a scheme. */
  address: string;
  namespace: string;
  token: string | undefined;
  tls: boolean;
  /** PEM contents for the TLS connection. */
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  cacheDir: string;
  retry: RetryPolicy;
  timeoutMs: number;
}

/** Explicit options first, then QUARRY_* variables, then the credentials file, then defaults; checked here,
 * before any call. */
export function resolveConfig(options: ClientOptions = {}): Config {
  const env = options.env ?? process.env;
  const given = options.address || env["QUARRY_ADDRESS"];
  let token = options.token ? checkToken(options.token, "the token option")
    : env["QUARRY_TOKEN"] ? checkToken(env["QUARRY_TOKEN"], "QUARRY_TOKEN") : undefined;
  const stored = token === undefined ? readCredentials(credentialsPath(env)) : undefined;
  const target = given || stored?.address || DEFAULT_ADDRESS;
  const [bare, schemeTls] = splitScheme(target);
  // A file that names an address gives its token to that server only.
  if (token === undefined && stored !== undefined && (stored.address === undefined
      || splitScheme(stored.address)[0] === bare)) {
    token = stored.token;
  }
  const fromFile = stored !== undefined && token === stored.token;
  const namespace = options.namespace || env["QUARRY_NAMESPACE"] || (fromFile ? stored.namespace : undefined)
    || DEFAULT_NAMESPACE;
  if (!NAMESPACE.test(namespace)) {
    throw new UsageError(`invalid namespace ${JSON.stringify(namespace)} (QUARRY_NAMESPACE / namespace): use 1-63 `
      + "lower-case letters, digits and '-_.'");
  }
  if (!/^(\[[0-9a-fA-F:.]+\]|[^:/\s]+):\d+$/.test(bare)) {
    throw new UsageError(`invalid address ${JSON.stringify(target)} (QUARRY_ADDRESS / address): expected host:port `
      + "or grpcs://host:port");
  }
  const ca = pem(options.caFile || env["QUARRY_CA_FILE"], "caFile / QUARRY_CA_FILE");
  const cert = pem(options.certFile || env["QUARRY_CERT_FILE"], "certFile / QUARRY_CERT_FILE");
  const key = pem(options.keyFile || env["QUARRY_KEY_FILE"], "keyFile / QUARRY_KEY_FILE");
  if ((cert === undefined) !== (key === undefined)) {
    throw new UsageError("a client certificate needs its key: give both certFile and keyFile (QUARRY_CERT_FILE, "
      + "QUARRY_KEY_FILE), or neither");
  }
  const tls = chooseTls(schemeTls, options.tls, ca !== undefined || cert !== undefined, target);
  return {
    baseUrl: `${tls ? "https" : "http"}://${bare}`,
    address: bare,
    namespace,
    token,
    tls,
    ca, cert, key,
    cacheDir: options.cacheDir || cacheDir(env),
    retry: { ...DEFAULT_RETRY, ...(options.retry ?? {}) },
    timeoutMs: options.timeoutMs ?? 30_000,
  };
}

/** host:port and whether the scheme asks for TLS (undefined: no scheme). */
function splitScheme(target: string): [string, boolean | undefined] {
  for (const [scheme, secure] of [["grpcs://", true], ["grpc://", false]] as const) {
    if (target.startsWith(scheme)) {
      return [target.slice(scheme.length), secure];
    }
  }
  return [target, undefined];
}

/** Whether to speak TLS: the scheme's word, else the option, else yes when a CA or certificate was given. */
function chooseTls(scheme: boolean | undefined, explicit: boolean | undefined, wants: boolean, target: string): boolean {
  if (scheme !== undefined && explicit !== undefined && scheme !== explicit) {
    throw new UsageError(`${JSON.stringify(target)} and tls=${explicit} disagree: use grpcs:// for TLS, host:port or `
      + "grpc:// for plaintext");
  }
  if (scheme === false && wants) {
    throw new UsageError(`${JSON.stringify(target)} is plaintext, yet a CA or client certificate was given: use grpcs://`);
  }
  const chosen = scheme ?? explicit;
  return chosen === undefined ? wants : chosen;
}

function pem(path: string | undefined, option: string): Buffer | undefined {
  if (!path) {
    return undefined;
  }
  let bytes: Buffer;
  try {
    bytes = readFileSync(path.startsWith("~/") ? join(homedir(), path.slice(2)) : path);
  } catch (error) {
    throw new UsageError(`cannot read ${path} (${option}): ${(error as Error).message}`);
  }
  if (!bytes.subarray(0, 1 << 16).includes("-----BEGIN ")) {
    throw new UsageError(`${path} (${option}) is not a PEM file`);
  }
  return bytes;
}

/** QUARRY_CACHE_DIR, else the platform's per-user cache directory plus "quarry" (as the Python SDK). */
export function cacheDir(env: Record<string, string | undefined> = process.env): string {
  const explicit = env["QUARRY_CACHE_DIR"];
  if (explicit) {
    return explicit.startsWith("~/") ? join(homedir(), explicit.slice(2)) : explicit;
  }
  const home = homedir();
  if (process.platform === "win32") {
    return join(env["LOCALAPPDATA"] || join(home, "AppData", "Local"), "quarry", "Cache");
  }
  if (process.platform === "darwin") {
    return join(home, "Library", "Caches", "quarry");
  }
  return join(env["XDG_CACHE_HOME"] || join(home, ".cache"), "quarry");
}
