/**
 * The client's configuration: the only place it reads the environment. The same variables and defaults
 * as the Python SDK:
 *
 *     QUARRY_ADDRESS     host:port of the server (default 127.0.0.1:50051)
 *     QUARRY_NAMESPACE   namespace every call acts in (default "default", the server's default)
 *     QUARRY_CACHE_DIR   where resumable upload state is kept (default: the per-user cache directory)
 */
import { homedir } from "node:os";
import { join } from "node:path";

import { UsageError } from "./errors.js";
import { DEFAULT_RETRY, type RetryPolicy } from "./retry.js";

export const DEFAULT_ADDRESS = "127.0.0.1:50051";
export const DEFAULT_NAMESPACE = "default";
const NAMESPACE = /^[a-z0-9][a-z0-9._-]{0,62}$/;

/** What a QuarryClient is built from; every field is optional. */
export interface ClientOptions {
  /** host:port of the server, or a URL (http://host:port). */
  address?: string;
  /** Namespace every call acts in. */
  namespace?: string;
  /** Where resumable upload state is kept. */
  cacheDir?: string;
  /** Retry policy of calls that are safe to repeat. */
  retry?: Partial<RetryPolicy>;
  /** Deadline of a unary call, in ms (default 30 s). */
  timeoutMs?: number;
  /** The environment to read QUARRY_* from (default process.env): tests pass their own. */
  env?: Record<string, string | undefined>;
}

/** Where the server is, which namespace to act in, where resume state lives, how to retry. */
export interface Config {
  baseUrl: string;
  address: string;
  namespace: string;
  cacheDir: string;
  retry: RetryPolicy;
  timeoutMs: number;
}

/** Explicit options first, then QUARRY_* variables, then defaults; checked here, before any call. */
export function resolveConfig(options: ClientOptions = {}): Config {
  const env = options.env ?? process.env;
  const address = options.address || env["QUARRY_ADDRESS"] || DEFAULT_ADDRESS;
  const namespace = options.namespace || env["QUARRY_NAMESPACE"] || DEFAULT_NAMESPACE;
  if (!NAMESPACE.test(namespace)) {
    throw new UsageError(`invalid namespace ${JSON.stringify(namespace)} (QUARRY_NAMESPACE / namespace): use 1-63 `
      + "lower-case letters, digits and '-_.'");
  }
  let baseUrl: string;
  if (/^https?:\/\//.test(address)) {
    baseUrl = address;
  } else if (/^(\[[0-9a-fA-F:.]+\]|[^:/\s]+):\d+$/.test(address)) {
    baseUrl = `http://${address}`;
  } else {
    throw new UsageError(`invalid address ${JSON.stringify(address)} (QUARRY_ADDRESS / address): expected host:port`);
  }
  return {
    baseUrl,
    address,
    namespace,
    cacheDir: options.cacheDir || cacheDir(env),
    retry: { ...DEFAULT_RETRY, ...(options.retry ?? {}) },
    timeoutMs: options.timeoutMs ?? 30_000,
  };
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
