/** The client's logic without a server: plans, error classes, retries, configuration, names. */
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";

import { Code, ConnectError } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";

import {
  Aborted, BaseMoved, Budget, ChecksumMismatch, ConnectFailed, DEFAULT_RETRY, ERROR_DOMAIN, FailedPrecondition,
  Internal, InvalidArgument, NotFound, Unauthenticated, Unavailable, UsageError, WrongOffset, WrongState,
  committedIn, datasetName, fromConnect, pb, planRanges, resolveConfig, resumable, uploadName, versionName,
} from "../src/index.js";
import { ErrorInfoSchema, BadRequestSchema, RetryInfoSchema } from "../src/gen/google/rpc/error_details_pb.js";

describe("planRanges (the Python SDK's plan)", () => {
  test("a fresh file is cut into about equal runs of whole parts", () => {
    assert.deepEqual(planRanges(53, 10, [], 3), [
      { start: 0, stop: 20, firstPart: 1, last: false },
      { start: 20, stop: 40, firstPart: 3, last: false },
      { start: 40, stop: 53, firstPart: 5, last: true },
    ]);
  });

  test("committed parts are skipped, and gaps make runs of their own", () => {
    assert.deepEqual(planRanges(40, 10, [1, 3], 4), [
      { start: 10, stop: 20, firstPart: 2, last: false },
      { start: 30, stop: 40, firstPart: 4, last: true },
    ]);
    assert.deepEqual(planRanges(40, 10, [1, 2, 3, 4], 2), []);
  });

  test("an empty file is one stream that only finishes", () => {
    assert.deepEqual(planRanges(0, 10, [], 4), [{ start: 0, stop: 0, firstPart: 1, last: true }]);
    assert.deepEqual(planRanges(0, 10, [1], 4), []);
    assert.throws(() => planRanges(10, 0, [], 1), RangeError);
  });

  test("committedIn says where a broken range continues", () => {
    const range = { start: 10, stop: 40, firstPart: 2, last: true };
    const parts = [{ partNumber: 1n, sizeBytes: 10n }, { partNumber: 2n, sizeBytes: 10n }, { partNumber: 4n, sizeBytes: 10n }];
    assert.deepEqual(committedIn(parts, 10, range), [20, 20]); // parts 2 and 4 are in; part 3 is next
    assert.deepEqual(committedIn([...parts, { partNumber: 3n, sizeBytes: 10n }], 10, range), [30, 40]);
  });
});

function wireError(code: Code, reason: string,
                   extra: { domain?: string; retryMs?: number; field?: string } = {}): ConnectError {
  const details = [anyPack(ErrorInfoSchema, create(ErrorInfoSchema, { reason, domain: extra.domain ?? ERROR_DOMAIN,
    metadata: { expected_offset: "42" } }))];
  if (extra.field !== undefined) {
    details.push(anyPack(BadRequestSchema, create(BadRequestSchema, { fieldViolations: [{ field: extra.field,
      description: "bad" }] })));
  }
  if (extra.retryMs !== undefined) {
    details.push(anyPack(RetryInfoSchema, create(RetryInfoSchema, { retryDelay: { seconds: 0n,
      nanos: extra.retryMs * 1e6 } })));
  }
  // As the gRPC transport hands them over: each detail's type name and bytes.
  const error = new ConnectError("boom", code);
  error.details = details.map((d) => ({ type: d.typeUrl.slice(d.typeUrl.lastIndexOf("/") + 1), value: d.value }));
  return error;
}

describe("errors are chosen by status code and ErrorInfo reason", () => {
  test("the reason refines the code's class", () => {
    const offset = fromConnect(wireError(Code.FailedPrecondition, "WRONG_OFFSET"));
    assert.ok(offset instanceof WrongOffset && offset instanceof FailedPrecondition);
    assert.equal(offset.expectedOffset, 42);
    assert.equal(offset.errorReason, pb.ErrorReason.WRONG_OFFSET); // the contract's enum, prefix stripped
    assert.equal((fromConnect(wireError(Code.NotFound, "NEWER_THAN_THIS_CLIENT")) as NotFound).errorReason,
      pb.ErrorReason.UNSPECIFIED);
    assert.ok(fromConnect(wireError(Code.FailedPrecondition, "UPLOAD_EXPIRED")) instanceof WrongState);
    assert.ok(fromConnect(wireError(Code.FailedPrecondition, "BASE_MOVED")) instanceof BaseMoved);
    assert.ok(fromConnect(wireError(Code.DataLoss, "CHECKSUM_MISMATCH")) instanceof ChecksumMismatch);
    assert.ok(fromConnect(wireError(Code.NotFound, "DATASET_NOT_FOUND")) instanceof NotFound);
    assert.ok(fromConnect(wireError(Code.Unauthenticated, "TOKEN_UNKNOWN")) instanceof Unauthenticated);
    // An unknown reason keeps the code's class: new server reasons are safe.
    const novel = fromConnect(wireError(Code.FailedPrecondition, "SOMETHING_NEW"));
    assert.ok(novel instanceof FailedPrecondition && !(novel instanceof WrongState));
  });

  test("details: field violations and the retry delay", () => {
    const bad = fromConnect(wireError(Code.InvalidArgument, "INVALID_PATH", { field: "upload.path" }));
    assert.ok(bad instanceof InvalidArgument);
    assert.deepEqual(bad.violations, [{ field: "upload.path", description: "bad" }]);
    assert.equal(bad.reason, "INVALID_PATH");
    const busy = fromConnect(wireError(Code.Unavailable, "DATABASE_UNAVAILABLE", { retryMs: 250 }));
    assert.ok(busy instanceof Unavailable && !(busy instanceof ConnectFailed));
    assert.equal(busy.retryDelayMs, 250);
  });

  test("an ErrorInfo of another domain names no Quarry reason", () => {
    const foreign = fromConnect(wireError(Code.FailedPrecondition, "WRONG_OFFSET", { domain: "proxy.example" }));
    assert.ok(foreign instanceof FailedPrecondition && !(foreign instanceof WrongOffset));
    assert.equal(foreign.reason, "");
  });

  test("transport failures: UNAVAILABLE without a reason is ConnectFailed; anything else is Internal", () => {
    assert.ok(fromConnect(new ConnectError("refused", Code.Unavailable)) instanceof ConnectFailed);
    assert.ok(fromConnect(new Error("weird")) instanceof Internal);
    const reset = fromConnect(new ConnectError("reset", Code.Aborted));
    assert.ok(reset instanceof Aborted && resumable(reset as Aborted));
  });
});

describe("retries", () => {
  const fixed = { ...DEFAULT_RETRY, random: () => 1 };

  test("UNAVAILABLE and ABORTED are retried with growing delays; others are not", () => {
    const budget = new Budget(fixed);
    const down = fromConnect(new ConnectError("down", Code.Unavailable)) as Unavailable;
    assert.deepEqual([1, 2, 3, 4, 5, 6].map(() => budget.delayAfter(down)), [200, 400, 800, 1600, 3200, 5000]);
    assert.equal(new Budget(fixed).delayAfter(fromConnect(new ConnectError("x", Code.NotFound)) as NotFound), undefined);
  });

  test("RESOURCE_EXHAUSTED only with RetryInfo, and never sooner than it asks", () => {
    const budget = new Budget({ ...fixed, random: () => 0 });
    const later = fromConnect(wireError(Code.ResourceExhausted, "RATE_LIMITED", { retryMs: 700 })) as Unavailable;
    assert.equal(budget.delayAfter(later), 700);
    const full = fromConnect(wireError(Code.ResourceExhausted, "QUOTA")) as Unavailable;
    assert.equal(new Budget(fixed).delayAfter(full), undefined);
  });

  test("the time budget ends the retries, and progress renews it", () => {
    const budget = new Budget({ ...fixed, maxTotalMs: 0 });
    const down = fromConnect(new ConnectError("down", Code.Unavailable)) as Unavailable;
    assert.equal(budget.delayAfter(down), undefined);
    const counted = new Budget({ ...fixed, maxAttempts: 2 });
    assert.equal(counted.delayAfter(down), 200);
    assert.equal(counted.delayAfter(down), undefined);
    const renewed = new Budget({ ...fixed, maxAttempts: 2 });
    renewed.delayAfter(down);
    renewed.progressed();
    assert.equal(renewed.delayAfter(down), 200);
  });
});

describe("configuration and names", () => {
  test("options, then QUARRY_* variables, then defaults; bad values are refused before any call", () => {
    const env = { QUARRY_ADDRESS: "db:7000", QUARRY_NAMESPACE: "team", QUARRY_CACHE_DIR: "/c" };
    assert.deepEqual(resolveConfig({ env }).baseUrl, "http://db:7000");
    assert.equal(resolveConfig({ env }).namespace, "team");
    assert.equal(resolveConfig({ env }).cacheDir, "/c");
    assert.equal(resolveConfig({ env, namespace: "mine" }).namespace, "mine");
    assert.equal(resolveConfig({ env: {} }).baseUrl, "http://127.0.0.1:50051");
    assert.equal(resolveConfig({ env: {}, address: "[::1]:9" }).baseUrl, "http://[::1]:9");
    assert.throws(() => resolveConfig({ env: { QUARRY_NAMESPACE: "UPPER" } }), UsageError);
    assert.throws(() => resolveConfig({ env: {}, address: "nohost" }), UsageError);
  });

  test("short names become resource names; full names pass through", () => {
    assert.equal(datasetName("ns", "sales"), "namespaces/ns/datasets/sales");
    assert.equal(versionName("ns", "sales"), "namespaces/ns/datasets/sales/versions/latest");
    assert.equal(versionName("ns", "sales", 3), "namespaces/ns/datasets/sales/versions/3");
    assert.equal(versionName("ns", "sales", "namespaces/x/datasets/y/versions/2"), "namespaces/x/datasets/y/versions/2");
    assert.equal(uploadName("ns", "abc"), "namespaces/ns/uploads/abc");
    assert.throws(() => datasetName("ns", "a/b"), UsageError);
    assert.throws(() => versionName("ns", "a", "1/2"), UsageError);
  });
});

describe("tokens and the credentials file (the Python SDK's rules)", () => {
  const TOKEN = `qk_${"0123456789abcdef"}_${"s".repeat(43)}`;
  const OTHER = `qk_${"fedcba9876543210"}_${"t".repeat(43)}`;

  async function credentials(text: string): Promise<Record<string, string>> {
    const dir = await mkdtemp(join(tmpdir(), "quarry-cred-"));
    await writeFile(join(dir, "credentials"), text);
    return { QUARRY_CREDENTIALS: join(dir, "credentials") };
  }

  test("an option, else QUARRY_TOKEN, else the credentials file", async () => {
    const file = await credentials(`# written by quarry dev\ntoken = "${TOKEN}"\nnamespace = 'team-a'\n`);
    assert.equal(resolveConfig({ env: file }).token, TOKEN);
    assert.equal(resolveConfig({ env: file }).namespace, "team-a"); // the file's namespace goes with its token
    assert.equal(resolveConfig({ env: { ...file, QUARRY_TOKEN: OTHER } }).token, OTHER);
    assert.equal(resolveConfig({ env: { ...file, QUARRY_TOKEN: OTHER } }).namespace, "default");
    assert.equal(resolveConfig({ env: { ...file, QUARRY_TOKEN: OTHER }, token: TOKEN }).token, TOKEN);
    assert.equal(resolveConfig({ env: { QUARRY_CREDENTIALS: "/nonexistent/credentials" } }).token, undefined);
  });

  test("a file naming an address gives its token to that server only", async () => {
    const file = await credentials(`token = "${TOKEN}"\naddress = "grpcs://db.example:7443"\n`);
    const own = resolveConfig({ env: file });
    assert.deepEqual([own.token, own.baseUrl, own.tls], [TOKEN, "https://db.example:7443", true]);
    assert.equal(resolveConfig({ env: { ...file, QUARRY_ADDRESS: "other:50051" } }).token, undefined);
    assert.equal(resolveConfig({ env: { ...file, QUARRY_ADDRESS: "db.example:7443" } }).token, TOKEN);
  });

  test("a malformed token or file is refused before any call, never quoting the token", async () => {
    for (const bad of ["qk_short", `Bearer ${TOKEN}`]) {
      const error = (() => { try { resolveConfig({ env: { QUARRY_TOKEN: bad } }); } catch (e) { return e; } })();
      assert.ok(error instanceof UsageError && error.message.includes("QUARRY_TOKEN"), String(error));
      assert.ok(!(error as Error).message.includes(bad));
    }
    assert.throws(() => resolveConfig({ env: {}, token: "nope" }), /the token option/);
    for (const text of ["token: nope\n", `[section]\ntoken = "${TOKEN}"\n`, "namespace = \"x\"\n"]) {
      assert.throws(() => resolveConfig({ env: credentialsEnv(text) }), UsageError);
    }
  });

  test("TLS from the scheme, or from a CA or client certificate", () => {
    assert.equal(resolveConfig({ env: {}, address: "grpc://h:1" }).baseUrl, "http://h:1");
    assert.throws(() => resolveConfig({ env: {}, address: "grpcs://h:1", tls: false }), UsageError);
    assert.throws(() => resolveConfig({ env: {}, caFile: "/nonexistent.pem" }), /cannot read/);
    const dir = mkdtempSync(join(tmpdir(), "quarry-pem-"));
    writeFileSync(join(dir, "cert.pem"), "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
    writeFileSync(join(dir, "junk.pem"), "not a certificate");
    assert.throws(() => resolveConfig({ env: {}, certFile: join(dir, "cert.pem") }), /needs its key/);
    assert.throws(() => resolveConfig({ env: {}, caFile: join(dir, "junk.pem") }), /not a PEM file/);
    const secure = resolveConfig({ env: {}, address: "h:1", caFile: join(dir, "cert.pem") });
    assert.deepEqual([secure.tls, secure.baseUrl], [true, "https://h:1"]); // a CA given means TLS
    assert.throws(() => resolveConfig({ env: {}, address: "grpc://h:1", caFile: join(dir, "cert.pem") }), /plaintext/);
  });
});

function credentialsEnv(text: string): Record<string, string> {
  const dir = mkdtempSync(join(tmpdir(), "quarry-cred-"));
  writeFileSync(join(dir, "credentials"), text);
  return { QUARRY_CREDENTIALS: join(dir, "credentials") };
}
