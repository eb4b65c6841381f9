/**
 * The TypeScript client against a real Quarry (the same scenario as the Python SDK's tests): upload,
 * cut and resume, watch, read back, preview, and a bad input per error class.
 */
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import { create } from "@bufbuild/protobuf";

import {
  AlreadyExists, Aborted, Cancelled, ChecksumMismatch, ConnectFailed, InvalidArgument, NotFound, OutOfRange,
  PermissionDenied, QuarryClient, ResourceExhausted, Unauthenticated, Unavailable, Unimplemented, UploadFailed,
  UsageError,
  WrongOffset, WrongState, fromConnect, pb, type ClientOptions,
} from "../src/index.js";
import { BreakingProxy, MiB, freePort, newNamespace, sha256Of, startStack, writeRandomFile, type Stack } from "./support.js";

const PART = 5 * MiB; // the stack below makes every part 5 MiB, so multi-part files stay small
const MAX_UPLOAD = 64 * MiB;

let stack: Stack;
let work: string;

before(async () => {
  work = await mkdtemp(join(tmpdir(), "quarry-ts-"));
  stack = await startStack({
    QUARRY_MIN_PART_BYTES: String(PART), QUARRY_MAX_PART_BYTES: String(PART),
    QUARRY_MAX_UPLOAD_BYTES: String(MAX_UPLOAD),
    // A small flow-control window: what the server has not consumed is at most this much per stream.
    QUARRY_STREAM_WINDOW_BYTES: String(MiB),
  });
}, { timeout: 180_000 });

after(async () => {
  await stack?.stop();
  await rm(work, { recursive: true, force: true });
});

/** A client with the operator's token in a namespace of its own (made by the operator: namespaces are
 * operator-made), unless the options name a namespace. Nothing comes from the environment of whoever runs
 * the tests: no QUARRY_* variable, no credentials file. */
async function client(options: ClientOptions = {}): Promise<QuarryClient> {
  const quarry = new QuarryClient({ address: stack.address, namespace: newNamespace(), token: stack.token,
    cacheDir: join(work, "cache"), env: { QUARRY_CREDENTIALS: join(work, "no-credentials") }, ...options });
  if (options.namespace === undefined) {
    await quarry.unary((o) => quarry.namespaces.createNamespace({ namespaceId: quarry.config.namespace }, o));
  }
  return quarry;
}

async function csv(name: string, rows: number): Promise<string> {
  const lines = ["id,name,amount"];
  for (let i = 1; i <= rows; i++) {
    lines.push(`${i},item-${i},${(i * 1.5).toFixed(1)}`);
  }
  const path = join(work, name);
  await writeFile(path, `${lines.join("\n")}\n`);
  return path;
}

async function rejectsWith<T extends Error>(promise: Promise<unknown>, kind: abstract new (...a: never[]) => T,
                                            reason?: string): Promise<T> {
  const error = await promise.then(() => undefined, (e: unknown) => e);
  assert.ok(error instanceof kind, `expected ${kind.name}, got ${String(error)}`);
  if (reason !== undefined) {
    assert.equal((error as unknown as { reason: string }).reason, reason, String(error));
  }
  return error;
}

describe("the whole path", () => {
  test("upload, watch to PROMOTED, read back, preview", async () => {
    const quarry = await client();
    try {
      const path = await csv("sales.csv", 200);
      const sha = await sha256Of(path);
      const seen: [number, number][] = [];
      const result = await quarry.uploadFile(path, "sales", { autoCommit: true, commitMessage: "first",
        onProgress: (done, total) => seen.push([done, total]) });
      assert.equal(result.sha256, sha);
      assert.equal(result.upload.sha256, sha); // given with the finish message, computed while sending
      assert.equal(result.bytesSent, result.size);
      assert.deepEqual(seen.at(-1), [result.size, result.size]);
      assert.ok(result.upload.state >= pb.UploadState.STAGED);

      const states: pb.UploadState[] = [];
      for await (const upload of quarry.watchUpload(result.upload.name)) {
        states.push(upload.state);
      }
      assert.equal(states.at(-1), pb.UploadState.PROMOTED, `states: ${states}`);
      const done = await quarry.waitUpload(result.upload.uid);
      assert.ok(done.version.startsWith(`${quarry.parent}/datasets/sales/versions/`), done.version);

      const version = await quarry.getVersion("sales");
      assert.equal(version.state, pb.VersionState.READY);
      assert.equal(version.message, "first");
      assert.equal(version.files.length, 0); // the basic view
      const [file] = (await quarry.getVersion("sales", "latest", { view: pb.VersionView.FULL })).files;
      assert.deepEqual([file?.path, file?.sha256, Number(file?.rowCount)], ["sales.csv", sha, 200]);

      const out = join(work, "copy", "sales.csv");
      const copy = await quarry.download("sales", "sales.csv", out, { version: 1 });
      assert.equal(copy.sha256, sha);
      assert.deepEqual(await readFile(out), await readFile(path));

      const preview = await quarry.preview("sales", "sales.csv", { rows: 5 });
      assert.deepEqual(preview.columns.map((c) => c.name), ["id", "name", "amount"]);
      assert.equal(preview.rowCount, 5);
      assert.equal(preview.totalRows, 200);
      assert.deepEqual(preview.rows[0], { id: 1, name: "item-1", amount: 1.5 });
      assert.ok(preview.arrowIpcStream.length > 0);
    } finally {
      quarry.close();
    }
  });

  test("parallel streams write part ranges and CompleteUpload carries the sha256", async () => {
    const quarry = await client();
    try {
      const path = join(work, "parallel.bin");
      const size = 4 * PART + 123;
      const sha = await writeRandomFile(path, size);
      let last = 0;
      const result = await quarry.uploadFile(path, "par", { streams: 3, onProgress: (done) => { last = done; } });
      assert.equal(result.streams, 3); // parts [1,2], [3,4], [5]
      assert.equal(result.bytesSent, size);
      assert.equal(last, size);
      assert.equal(result.upload.parts.length, 5);
      assert.equal(result.upload.sha256, sha);
      const validated = await quarry.waitUpload(result.upload.name);
      assert.equal(validated.state, pb.UploadState.VALIDATED);
    } finally {
      quarry.close();
    }
  });
});

describe("versions", () => {
  test("a commit is followed with WatchVersion to READY under one name", async () => {
    const quarry = await client();
    try {
      const sent = [await quarry.uploadFile(await csv("one.csv", 10), "commits"),
        await quarry.uploadFile(await csv("two.csv", 20), "commits")];
      for (const { upload } of sent) {
        assert.equal((await quarry.waitUpload(upload.name)).state, pb.UploadState.VALIDATED);
      }
      const pending = await quarry.commitVersion("commits", { uploads: sent.map((r) => r.upload.uid),
        message: "two files" });
      assert.equal(pending.state, pb.VersionState.PENDING);
      assert.equal(pending.name, `${quarry.parent}/datasets/commits/versions/${pending.uid}`);
      const seen: pb.Version[] = [];
      for await (const version of quarry.watchVersion(pending.name)) {
        seen.push(version);
      }
      assert.deepEqual([...new Set(seen.map((v) => v.name))], [pending.name]); // one name, PENDING to READY
      assert.equal(seen.at(-1)?.state, pb.VersionState.READY);
      assert.equal(seen.at(-1)?.number, 1n);
      const ready = await quarry.waitVersion(pending.name);
      assert.equal(ready.name, pending.name);
      const files: pb.VersionFile[] = [];
      for await (const file of quarry.listVersionFiles("commits", "latest")) {
        files.push(file);
      }
      assert.deepEqual(files.map((f) => [f.path, Number(f.rowCount)]), [["one.csv", 10], ["two.csv", 20]]);
      const full = await quarry.getVersion("commits", 1, { view: pb.VersionView.FULL });
      assert.deepEqual(full.files.map((f) => f.path), ["one.csv", "two.csv"]);
      // The number and "latest" are aliases, answered with the canonical name.
      assert.equal((await quarry.getVersion("commits", 1)).name, pending.name);
      assert.equal((await quarry.waitVersion("commits")).name, pending.name);
      assert.equal((await quarry.getDataset("commits")).currentVersion, pending.name);
    } finally {
      quarry.close();
    }
  });
});

describe("breaks and resumes", () => {
  test("a connection cut twice mid-stream is resumed within the call", async () => {
    const quarry0 = await client();
    const proxy = await new BreakingProxy(stack.address, PART + 3 * MiB, 2).start();
    const quarry = await client({ address: proxy.address, namespace: quarry0.config.namespace });
    try {
      const path = join(work, "cut.bin");
      const size = 4 * PART + 99;
      const sha = await writeRandomFile(path, size);
      const result = await quarry.uploadFile(path, "cut", { streams: 1 });
      assert.equal(proxy.cuts, 2);
      assert.ok(result.upload.state >= pb.UploadState.STAGED);
      assert.equal(result.upload.sha256, sha);
      assert.ok(result.streams >= 3, `streams ${result.streams}`);
      // What a broken stream had not committed went again: at most the part in flight plus what the
      // transport had buffered, per break.
      assert.ok(result.bytesSent > size && result.bytesSent <= size + proxy.cuts * (PART + 8 * MiB),
        `sent ${result.bytesSent} of ${size}`);
      const validated = await quarry0.waitUpload(result.upload.name);
      assert.equal(validated.state, pb.UploadState.VALIDATED); // the sha256 computed across breaks is right
    } finally {
      quarry.close();
      quarry0.close();
      await proxy.close();
    }
  });

  test("an aborted upload is resumed by the next call from the committed parts", async () => {
    const quarry = await client();
    try {
      const path = join(work, "abort.bin");
      const size = 8 * PART + 7;
      const sha = await writeRandomFile(path, size);
      const stop = new AbortController();
      await rejectsWith(quarry.uploadFile(path, "abort", { streams: 1, signal: stop.signal,
        onProgress: (done) => { if (done >= 4 * PART) stop.abort(); } }), Cancelled);
      const [open] = (await quarry.uploads.listUploads({ parent: quarry.parent })).uploads;
      assert.equal(open?.state, pb.UploadState.OPEN);
      const committed = open!.parts.reduce((sum, p) => sum + Number(p.sizeBytes), 0);
      assert.ok(committed >= PART, `committed ${committed}`);

      const result = await quarry.uploadFile(path, "abort", { streams: 2 });
      assert.ok(result.resumed);
      assert.equal(result.upload.name, open!.name);
      // The aborted stream ended at a chunk boundary and the server answered: nothing was still landing.
      assert.equal(result.bytesSkipped, committed);
      assert.equal(result.bytesSent, size - committed); // no committed byte sent twice
      assert.equal(result.sha256, sha);
      assert.equal((await quarry.waitUpload(result.upload.name)).sha256, sha);
    } finally {
      quarry.close();
    }
  });

  test("a download cut mid-stream continues where it broke and checks the sha256", async () => {
    const quarry = await client();
    const proxy = await new BreakingProxy(stack.address, 3 * MiB, 1, true).start();
    const reader = await client({ address: proxy.address, namespace: quarry.config.namespace });
    try {
      const path = join(work, "down.bin");
      const sha = await writeRandomFile(path, 2 * PART + 5);
      const up = await quarry.uploadFile(path, "down", { autoCommit: true });
      await quarry.waitUpload(up.upload.name);
      const out = join(work, "down-copy.bin");
      const copy = await reader.download("down", "down.bin", out);
      assert.equal(proxy.cuts, 1);
      assert.equal(copy.sha256, sha);
      assert.equal(await sha256Of(out), sha);
    } finally {
      quarry.close();
      reader.close();
      await proxy.close();
    }
  });

  test("a call is retried with backoff until the server can be reached", async () => {
    const port = await freePort();
    let proxy: BreakingProxy | undefined;
    let delays = 0;
    const quarry = await client({ address: `127.0.0.1:${port}`, namespace: "default", retry: { initialBackoffMs: 50,
      random: () => {
      delays += 1;
      if (delays === 2) {
        // After the second refused attempt the server becomes reachable at that port.
        proxy = new BreakingProxy(stack.address, Number.MAX_SAFE_INTEGER, 0);
        void proxy.start(port);
      }
      return 1;
    } } });
    try {
      const caps = await quarry.getCapabilities();
      assert.ok(caps.maxChunkBytes > 0n);
      assert.ok(delays >= 2, `delays ${delays}`);
    } finally {
      quarry.close();
      await proxy?.close();
    }
  });
});

describe("tokens", () => {
  async function issue(operator: QuarryClient, role: pb.Role): Promise<string> {
    const made = await operator.unary((o) => operator.tokens.createToken({ token: { principal: `ts-${role}`,
      grants: [{ namespace: operator.parent, role }] } }, o));
    return made.secret;
  }

  test("without a token a call is UNAUTHENTICATED; GetCapabilities needs none and says tokens are on", async () => {
    const anonymous = await client({ token: undefined, namespace: "default" });
    try {
      assert.equal(anonymous.config.token, undefined);
      assert.equal((await anonymous.getCapabilities()).authMode, pb.AuthMode.TOKENS);
      await rejectsWith(anonymous.getDataset("sales"), Unauthenticated, "TOKEN_MISSING");
    } finally {
      anonymous.close();
    }
  });

  test("a reader's token reads its namespace, cannot write, and is refused elsewhere", async () => {
    const operator = await client();
    const other = await client();
    try {
      const sent = await operator.uploadFile(await csv("r.csv", 4), "shared", { autoCommit: true });
      await operator.waitUpload(sent.upload.name);
      const reader = await client({ namespace: operator.config.namespace,
        token: await issue(operator, pb.Role.READER) });
      try {
        assert.equal((await reader.getVersion("shared")).state, pb.VersionState.READY);
        const denied = await rejectsWith(reader.uploadFile(await csv("w.csv", 2), "shared"), PermissionDenied,
          "ROLE_REQUIRED");
        assert.equal(denied.metadata["role"], "writer");
        await rejectsWith(reader.getDataset(`${other.parent}/datasets/shared`), PermissionDenied,
          "NAMESPACE_NOT_GRANTED");
      } finally {
        reader.close();
      }
    } finally {
      operator.close();
      other.close();
    }
  });

  test("the token, address and namespace come from the credentials file, for its server only", async () => {
    const operator = await client();
    try {
      await operator.createDataset("from-file");
      const token = await issue(operator, pb.Role.READER);
      const file = join(work, "credentials");
      await writeFile(file, `# written like quarry dev\ntoken = "${token}"\naddress = "${stack.address}"\n`
        + `namespace = "${operator.config.namespace}"\n`);
      const fromFile = new QuarryClient({ cacheDir: join(work, "cache"), env: { QUARRY_CREDENTIALS: file } });
      try {
        assert.equal(fromFile.config.namespace, operator.config.namespace);
        assert.equal((await fromFile.getDataset("from-file")).name, `${operator.parent}/datasets/from-file`);
      } finally {
        fromFile.close();
      }
      // The same file does not give its token to another server (here: the same one under another name).
      const elsewhere = new QuarryClient({ address: `localhost:${stack.address.split(":")[1]}`,
        cacheDir: join(work, "cache"), env: { QUARRY_CREDENTIALS: file } });
      try {
        assert.equal(elsewhere.config.token, undefined);
        await rejectsWith(elsewhere.getDataset("from-file"), Unauthenticated, "TOKEN_MISSING");
      } finally {
        elsewhere.close();
      }
    } finally {
      operator.close();
    }
  });
});

describe("a bad input per error class", () => {
  test("UsageError: nothing is sent", async () => {
    assert.throws(() => new QuarryClient({ namespace: "Not A Namespace" }), UsageError);
    assert.throws(() => new QuarryClient({ address: "no port" }), UsageError);
    const quarry = await client();
    try {
      await rejectsWith(quarry.uploadFile(join(work, "missing.csv"), "x"), UsageError);
      await rejectsWith(quarry.getDataset("a/b"), UsageError);
    } finally {
      quarry.close();
    }
  });

  test("InvalidArgument, AlreadyExists, NotFound, PermissionDenied, Aborted", async () => {
    const quarry = await client();
    try {
      const bad = await rejectsWith(quarry.createDataset("Bad Name!"), InvalidArgument, "INVALID_DATASET_NAME");
      assert.deepEqual(bad.violations.map((v) => v.field), ["dataset_id"]);
      const made = await quarry.createDataset("ds", { description: "d" });
      await rejectsWith(quarry.createDataset("ds"), AlreadyExists);
      await rejectsWith(quarry.getDataset("nope"), NotFound, "DATASET_NOT_FOUND");
      // A stale etag is ABORTED: retrying the same request cannot help, so it is made once.
      const stale = quarry.unary((o) => quarry.datasets.updateDataset({
        dataset: { name: made.name, description: "new", etag: "stale" }, updateMask: { paths: ["description"] } }, o),
        undefined, false);
      await rejectsWith(stale, Aborted, "ETAG_MISMATCH");
    } finally {
      quarry.close();
    }
  });

  test("WrongOffset, WrongState, OutOfRange, Unimplemented", async () => {
    const quarry = await client();
    try {
      const path = await csv("small.csv", 3);
      const result = await quarry.uploadFile(path, "small", { autoCommit: true });
      await quarry.waitUpload(result.upload.name);
      await rejectsWith(quarry.cancelUpload(result.upload.name), WrongState, "UPLOAD_NOT_CANCELLABLE");
      const name = (await quarry.getVersion("small")).name;
      const beyond = (async () => {
        for await (const _ of quarry.datasets.readFile({ version: name, path: "small.csv", offset: 1000n })) {
          // nothing: the call fails first
        }
      })().catch((e: unknown) => { throw fromConnect(e); });
      await rejectsWith(beyond, OutOfRange, "OFFSET_OUT_OF_RANGE");
      const url = quarry.unary((o) => quarry.datasets.getDownloadUrl({ version: name, path: "small.csv" }, o));
      await rejectsWith(url, Unimplemented, "DOWNLOAD_URL_UNSUPPORTED");

      const open = (await quarry.uploads.createUpload({ upload: { dataset: "small", path: "b.csv" } })).upload!;
      async function* wrongOffset(): AsyncGenerator<pb.UploadRequest> {
        yield create(pb.UploadRequestSchema, { kind: { case: "header", value: {
          target: { case: "upload", value: open.name }, writeOffset: 12345n } } });
      }
      const wrong = await rejectsWith(quarry.uploads.upload(wrongOffset()).catch((e: unknown) => {
        throw fromConnect(e);
      }), WrongOffset, "WRONG_OFFSET");
      assert.equal(wrong.expectedOffset, 0);
    } finally {
      quarry.close();
    }
  });

  test("ChecksumMismatch, ResourceExhausted, UploadFailed, ConnectFailed", async () => {
    const quarry = await client();
    try {
      async function* badCrc(): AsyncGenerator<pb.UploadRequest> {
        yield create(pb.UploadRequestSchema, { kind: { case: "header", value: { target: { case: "create", value: {
          upload: { dataset: "crc", path: "c.bin" } } } } } });
        yield create(pb.UploadRequestSchema, { kind: { case: "chunk", value: { data: new Uint8Array([1, 2, 3]),
          crc32c: 0 } } });
        yield create(pb.UploadRequestSchema, { kind: { case: "finish", value: {} } });
      }
      await rejectsWith(quarry.uploads.upload(badCrc()).catch((e: unknown) => { throw fromConnect(e); }),
        ChecksumMismatch, "CHECKSUM_MISMATCH");

      const huge = join(work, "huge.bin");
      await writeFile(huge, "");
      await truncate(huge, MAX_UPLOAD + 1); // sparse: declared too large before any byte is read
      await rejectsWith(quarry.uploadFile(huge, "huge"), ResourceExhausted, "UPLOAD_TOO_LARGE");

      const ragged = join(work, "ragged.csv");
      await writeFile(ragged, "a,b\n1,2\n3\n");
      const up = await quarry.uploadFile(ragged, "ragged", { autoCommit: true });
      const failed = await rejectsWith(quarry.waitUpload(up.upload.name), UploadFailed);
      assert.equal((failed.upload as pb.Upload).failure?.reason, "RAGGED_ROW");

      // Nothing left behind by the refused calls: only the ragged upload exists.
      const left = (await quarry.uploads.listUploads({ parent: quarry.parent })).uploads;
      assert.deepEqual(left.map((u) => u.path), ["ragged.csv"]);
    } finally {
      quarry.close();
    }
    const nowhere = await client({ address: `127.0.0.1:${await freePort()}`, namespace: "default",
      retry: { maxTotalMs: 300 } });
    try {
      const error = await rejectsWith(nowhere.getCapabilities(), ConnectFailed);
      assert.ok(error instanceof Unavailable);
    } finally {
      nowhere.close();
    }
  });
});
