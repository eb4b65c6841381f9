/**
 * When a failed call is tried again, and after how long: a time budget, backoff with full jitter.
 *
 * Only calls safe to repeat are retried: reads, idempotent writes, creates that carry a request_id.
 * Retried codes are UNAVAILABLE and ABORTED, and RESOURCE_EXHAUSTED only when the server said when to
 * come back (RetryInfo). Delays grow exponentially up to a cap with "full jitter" (a uniform draw below
 * the cap, so many clients do not retry in step), never shorter than RetryInfo asks. What ends the
 * retries is time: `maxTotalMs` since the call started, or since a stream last moved forward, so a
 * server restart of up to that long is ridden out. The same rules as the Python SDK's.
 */
import { Code } from "@connectrpc/connect";

import { Cancelled, RpcError } from "./errors.js";

/** Exponential backoff with full jitter, within a time budget. */
export interface RetryPolicy {
  /** Delay cap of the first retry, in ms. */
  initialBackoffMs: number;
  /** Largest delay cap, in ms. */
  maxBackoffMs: number;
  /** Growth of the cap per retry. */
  multiplier: number;
  /** How long a call may keep retrying, in ms (a stream: since it last moved forward). */
  maxTotalMs: number;
  /** Most tries; undefined: as many as fit in maxTotalMs. */
  maxAttempts?: number;
  /** A uniform draw in [0, 1): Math.random unless a test fixes it. */
  random?: () => number;
}

export const DEFAULT_RETRY: RetryPolicy = {
  initialBackoffMs: 200, maxBackoffMs: 5000, multiplier: 2, maxTotalMs: 60_000,
};

/** Whether the error's code says trying again may succeed, for a call that is safe to repeat. */
export function isRetryable(error: RpcError): boolean {
  if (error.code === Code.Unavailable || error.code === Code.Aborted) {
    return true;
  }
  return error.code === Code.ResourceExhausted && error.retryDelayMs !== undefined;
}

/** The cap of the delay before retry number `attempt` (1-based). */
export function backoffCap(policy: RetryPolicy, attempt: number): number {
  const exponent = Math.min(Math.max(0, attempt - 1), 64);
  return Math.min(policy.maxBackoffMs, policy.initialBackoffMs * policy.multiplier ** exponent);
}

/** The retry decisions of one call: failures in a row and the time since it started or last moved. */
export class Budget {
  failures = 0;
  private since = Date.now();
  private spent = false;

  constructor(readonly policy: RetryPolicy,
              private readonly retryable: (error: RpcError) => boolean = isRetryable,
              private readonly minDelayMs: (error: RpcError) => number = () => 0) {}

  /** The call moved forward (a stream committed bytes): the next failure starts afresh. */
  progressed(): void {
    this.failures = 0;
    this.since = Date.now();
  }

  /** Nothing is retried any more: the next failure is the call's end. */
  spend(): void {
    this.spent = true;
  }

  /** Ms to wait before trying again after `error`, or undefined to give up. */
  delayAfter(error: RpcError): number | undefined {
    this.failures += 1;
    if (this.spent || !this.retryable(error)) {
      return undefined;
    }
    const policy = this.policy;
    const left = policy.maxTotalMs - (Date.now() - this.since);
    const floor = error.retryDelayMs ?? 0;
    if ((policy.maxAttempts !== undefined && this.failures >= policy.maxAttempts) || left <= 0 || floor > left) {
      return undefined;
    }
    const jittered = (policy.random ?? Math.random)() * backoffCap(policy, this.failures);
    return Math.min(Math.max(jittered, floor, this.minDelayMs(error)), left);
  }
}

/** Wait `ms`, or throw Cancelled as soon as `signal` fires. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(cancelled(signal));
      return;
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(cancelled(signal));
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** The error of a call the caller's AbortSignal stopped. */
export function cancelled(signal?: AbortSignal): Cancelled {
  const why = signal?.reason instanceof Error ? signal.reason.message : "the operation was aborted";
  return new Cancelled(Code.Canceled, why, { cause: signal?.reason });
}

/** Run `call` until it succeeds, or fails with an error the budget does not retry. */
export async function withRetries<T>(budget: Budget, call: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  for (;;) {
    try {
      return await call();
    } catch (error) {
      if (!(error instanceof RpcError) || signal?.aborted) {
        throw error;
      }
      const delay = budget.delayAfter(error);
      if (delay === undefined) {
        throw error;
      }
      await sleep(delay, signal);
    }
  }
}
