/**
 * One file over one or several Upload streams, resumable.
 *
 * The upload is created with a request_id saved beforehand (a create whose answer was lost is not
 * duplicated) and its name is saved as soon as it is known, so a restarted process resumes it from
 * GetUpload's committed parts. Each stream sends one range of whole parts; a broken stream is continued
 * from the first part of its range the server has not committed, never re-sending a committed part, for
 * as long as the retry budget allows. The sha256 is computed while the bytes go out (see hash.ts) and
 * given with the finish message, or to CompleteUpload after parallel streams.
 */
import { basename } from "node:path";
import { open } from "node:fs/promises";

import { create } from "@bufbuild/protobuf";
import { Code, type CallOptions, type Client } from "@connectrpc/connect";

import { RpcError, IntegrityError, UsageError, fromConnect, QuarryError } from "./errors.js";
import { FileHasher } from "./hash.js";
import { committedIn, planRanges, type Range } from "./plan.js";
import { Budget, backoffCap, cancelled, sleep, type RetryPolicy } from "./retry.js";
import { ResumeStore, identityOf, sameIdentity, type FileIdentity, type ResumeState } from "./state.js";
import { UploadState, type Upload } from "./gen/quarry/v1/upload_pb.js";
import {
  UploadRequestSchema, UploadService, type UploadRequest, type UploadResponse,
} from "./gen/quarry/v1/upload_service_pb.js";

/** Response metadata of an Upload stream: the upload's name, sent as soon as the header is accepted. */
export const UPLOAD_METADATA = "x-quarry-upload";
/** Upload states at or past STAGED: every byte is in. */
export const STAGED_OR_LATER = new Set([UploadState.STAGED, UploadState.VALIDATING, UploadState.VALIDATED,
  UploadState.PROMOTED]);
/** Upload states that end an upload without a version. */
export const DEAD = new Set([UploadState.FAILED, UploadState.CANCELLED, UploadState.EXPIRED]);
// The server moved on since we asked (a part landed late): ask again at once.
const RACES = new Set(["WRONG_OFFSET", "PART_ALREADY_WRITTEN"]);
const BROKEN = new Set([Code.Unavailable, Code.Aborted, Code.Canceled, Code.DeadlineExceeded]);
const DEFAULT_CHUNK = 4 << 20;
const STOP_GRACE_MS = 10_000;

/** Progress of an upload: bytes done (committed or in flight; rewinds after a break) of the total. */
export type ProgressCallback = (done: number, total: number) => void;

/** Options of uploadFile. */
export interface UploadOptions {
  /** Path of the file in the dataset's versions (default: the file's base name). */
  dest?: string;
  /** Most streams at once for a file of several parts (default 4). */
  streams?: number;
  /** Called as bytes go out and as a broken stream's uncommitted bytes are given back. */
  onProgress?: ProgressCallback;
  /** Stops the upload: open streams end, committed parts stay, and a later call resumes. */
  signal?: AbortSignal;
  /** Media type, a hint for format detection. */
  contentType?: string;
  /** Commit a version with this file once it validates. */
  autoCommit?: boolean;
  /** Message of that version. */
  commitMessage?: string;
  /** Bytes per UploadChunk (default 4 MiB, at most the server's max_chunk_bytes). */
  chunkSize?: number;
}

/** What uploadFile did. */
export interface UploadResult {
  upload: Upload;
  path: string;
  size: number;
  sha256: string;
  /** Chunk bytes handed to streams (more than the size when broken streams sent parts again). */
  bytesSent: number;
  /** Bytes already committed by an earlier call, not sent again. */
  bytesSkipped: number;
  /** Whether an upload started earlier was continued. */
  resumed: boolean;
  /** Streams opened, counting the ones continuing after a break. */
  streams: number;
}

/** What the uploader needs from the client. */
export interface UploadDeps {
  namespace: string;
  retry: RetryPolicy;
  store: ResumeStore;
  uploads: Client<typeof UploadService>;
  /** A unary call with our errors, retried when safe. */
  unary<T>(call: (options: CallOptions) => Promise<T>, signal?: AbortSignal): Promise<T>;
  /** The server's max_chunk_bytes. */
  maxChunkBytes(signal?: AbortSignal): Promise<number>;
}

/** Bytes sent (monotonic) and bytes done (what the progress callback sees), shared by a file's streams. */
class Tally {
  sent = 0;
  skipped = 0;
  streams = 0;
  private done = 0;

  constructor(readonly total: number, private readonly progress?: ProgressCallback) {}

  skip(bytes: number): void {
    this.skipped += bytes;
    this.move(bytes);
  }

  add(bytes: number): void {
    this.sent += bytes;
    this.move(bytes);
  }

  rewind(bytes: number): void {
    this.move(-bytes);
  }

  private move(delta: number): void {
    this.done += delta;
    if (delta !== 0) {
      this.progress?.(this.done, this.total);
    }
  }
}

/** The upload of one file to one dataset path. */
class Job {
  constructor(readonly deps: UploadDeps, readonly path: string, readonly identity: FileIdentity,
              readonly dataset: string, readonly dest: string, readonly options: UploadOptions,
              readonly key: string, public state: ResumeState) {}

  get size(): number {
    return this.identity.size;
  }

  /** Whether a saved upload is this file's: same target and size, and still usable. */
  matches(upload: Upload | undefined): upload is Upload {
    return upload !== undefined && upload.dataset === this.dataset && upload.path === this.dest
      && upload.declaredSizeBytes !== undefined && Number(upload.declaredSizeBytes) === this.size
      && !DEAD.has(upload.state);
  }

  async remember(upload: Upload): Promise<void> {
    this.state.upload = upload.name;
    await this.deps.store.save(this.key, this.state);
  }

  async forget(): Promise<void> {
    await this.deps.store.delete(this.key);
  }

  /** Refuse to finish an upload of a file that changed while it was read. */
  async checkUnchanged(): Promise<void> {
    const now = await identityOf(this.path).catch(() => undefined);
    if (now === undefined || !sameIdentity(now, this.identity)) {
      await this.forget();
      throw new IntegrityError(`${this.path} changed while it was uploaded; upload it again`);
    }
  }
}

/** One range of a file sent over streams that may break: where the next one starts, and when it is done. */
class RangeStream {
  start: number;
  committed = 0; // bytes of the range's parts the server has committed
  sent = 0; // chunk bytes handed to the current stream
  broken: RpcError | undefined;

  constructor(readonly name: string, readonly range: Range, readonly partSize: number, readonly tally: Tally) {
    this.start = range.start;
  }

  opened(): void {
    this.sent = 0;
    this.tally.streams += 1;
  }

  add(bytes: number): void {
    this.sent += bytes;
    this.tally.add(bytes);
  }

  /** Take the server's view after a break: true when no stream is needed any more. */
  resume(upload: Upload, budget: Budget): boolean {
    const error = this.broken;
    this.broken = undefined;
    if (STAGED_OR_LATER.has(upload.state)) {
      return true; // a finish that landed although its answer was lost
    }
    if (upload.state !== UploadState.OPEN) {
      budget.spend();
      throw error ?? new UsageError(`upload ${upload.name} is no longer open`);
    }
    const [now, start] = committedIn(upload.parts, this.partSize, this.range);
    this.start = start;
    this.tally.rewind(this.sent - (now - this.committed));
    if (now > this.committed) {
      budget.progressed(); // a new run of failures, not the same one
    }
    this.committed = now;
    return this.start >= this.range.stop && this.range.stop > this.range.start;
  }
}

/** Whether a failed Upload stream may be continued from the committed parts. */
export function resumable(error: RpcError, signal?: AbortSignal): boolean {
  if (signal?.aborted) {
    return false;
  }
  if (BROKEN.has(error.code) || RACES.has(error.reason)) {
    return true;
  }
  // A reset connection arrives as ABORTED (ECONNRESET); a reset HTTP/2 stream as INTERNAL or UNKNOWN. Either
  // way without an ErrorInfo: Quarry's own errors always carry a reason, the transport's never do.
  return (error.code === Code.Internal || error.code === Code.Unknown) && !error.reason;
}

/** Upload a file: resume a saved upload of it, else create one; send what is missing; stage it. */
export async function uploadFile(deps: UploadDeps, path: string, dataset: string,
                                 options: UploadOptions = {}): Promise<UploadResult> {
  const signal = options.signal;
  let identity: FileIdentity;
  try {
    identity = await identityOf(path);
  } catch (error) {
    throw new UsageError(`${path}: ${(error as Error).message}`);
  }
  if (!dataset) {
    throw new UsageError("dataset is empty");
  }
  const dest = options.dest || basename(path);
  const key = ResumeStore.key(identity, deps.namespace, dataset, dest);
  const job = new Job(deps, path, identity, dataset, dest, options, key, await deps.store.load(key));
  const tally = new Tally(job.size, options.onProgress);
  const hasher = new FileHasher(identity.path, identity.size);
  const [opened, resumed] = await openUpload(job, signal);
  let upload = opened;
  if (upload.state === UploadState.OPEN) {
    upload = await send(job, upload, tally, hasher);
  } else {
    tally.skip(job.size);
  }
  await job.checkUnchanged();
  const sha256 = await hasher.digest(signal);
  await job.forget();
  return { upload, path: identity.path, size: job.size, sha256, bytesSent: tally.sent, bytesSkipped: tally.skipped,
    resumed, streams: tally.streams };
}

async function openUpload(job: Job, signal?: AbortSignal): Promise<[Upload, boolean]> {
  const { deps } = job;
  if (job.state.upload) {
    let saved: Upload | undefined;
    try {
      saved = (await deps.unary((o) => deps.uploads.getUpload({ name: job.state.upload }, o), signal)).upload;
    } catch (error) {
      if (!(error instanceof RpcError) || ![Code.NotFound, Code.PermissionDenied].includes(error.code)) {
        throw error;
      }
    }
    if (job.matches(saved)) {
      return [saved, true];
    }
    job.state = { upload: "", requestId: crypto.randomUUID() };
  }
  await deps.store.save(job.key, job.state); // the request_id first: a lost answer must not make a second upload
  const response = await deps.unary((o) => deps.uploads.createUpload({
    upload: {
      dataset: job.dataset, path: job.dest, declaredSizeBytes: BigInt(job.size),
      contentType: job.options.contentType ?? "", autoCommit: job.options.autoCommit ?? false,
      commitMessage: job.options.commitMessage ?? "",
    },
    requestId: job.state.requestId,
  }, o), signal);
  const upload = response.upload!;
  await job.remember(upload);
  // A create repeated with the saved request_id returns the first upload, parts and all.
  return [upload, upload.parts.length > 0];
}

async function send(job: Job, upload: Upload, tally: Tally, hasher: FileHasher): Promise<Upload> {
  const { deps, options } = job;
  const signal = options.signal;
  const partSize = Number(upload.partSizeBytes);
  const streams = Math.max(1, options.streams ?? 4);
  tally.skip(upload.parts.reduce((sum, part) => sum + Number(part.sizeBytes), 0));
  const ranges = planRanges(job.size, partSize, upload.parts.map((p) => Number(p.partNumber)), streams);
  // One stream continuing the committed prefix to the end finishes the upload itself, sha256 and all.
  const single = ranges.length === 1 && ranges[0]!.last && ranges[0]!.start === Number(upload.committedBytes);
  const chunkSize = Math.min(options.chunkSize ?? DEFAULT_CHUNK, await deps.maxChunkBytes(signal));
  const stop = new AbortController(); // another stream failed: the others end at their next chunk
  const background = single ? undefined : hasher.catchUp(job.size, signal).catch(() => undefined);
  const sender = new RangeSender(job, upload.name, partSize, chunkSize, tally, hasher, stop.signal);
  let responses: (UploadResponse | undefined)[];
  if (single) {
    await hasher.catchUp(ranges[0]!.start, signal); // the committed prefix, from disk
    responses = [await sender.send(ranges[0]!, false)];
  } else {
    responses = await pool(ranges, Math.min(streams, ranges.length), (range) => sender.send(range, true), stop);
  }
  await background;
  const staged = responses.find((r) => r?.upload !== undefined && STAGED_OR_LATER.has(r.upload.state));
  if (staged?.upload !== undefined) {
    return staged.upload;
  }
  await job.checkUnchanged();
  const sha256 = await hasher.digest(signal);
  const complete = await deps.unary((o) => deps.uploads.completeUpload({ name: upload.name, sha256 }, o), signal);
  return complete.upload!;
}

/** Run `work` over the items, `width` at a time; the first failure stops the rest and is thrown. */
async function pool<T, R>(items: T[], width: number, work: (item: T) => Promise<R>,
                          stop: AbortController): Promise<R[]> {
  const results: R[] = new Array(items.length);
  const failed: { error?: object } = {};
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < items.length && failed.error === undefined) {
      const index = next++;
      try {
        results[index] = await work(items[index]!);
      } catch (caught) {
        // The first real failure wins over the Stopped of the streams it stopped.
        if (failed.error === undefined || (isStopped(failed.error) && !isStopped(caught))) {
          failed.error = caught as object;
        }
        stop.abort();
      }
    }
  };
  await Promise.all(Array.from({ length: width }, lane));
  if (failed.error !== undefined) {
    throw failed.error;
  }
  return results;
}

/** A stream that ended early because another stream of the same upload failed. */
class Stopped extends QuarryError {
  override name = "Stopped";
}

function isStopped(error: unknown): boolean {
  return error instanceof Stopped;
}

/** Sends ranges of one upload, each over as many streams as breaks require. */
class RangeSender {
  constructor(private readonly job: Job, private readonly name: string, private readonly partSize: number,
              private readonly chunkSize: number, private readonly tally: Tally, private readonly hasher: FileHasher,
              private readonly stop: AbortSignal) {}

  /** Send one range; undefined when its parts are committed but the upload may still need CompleteUpload. */
  async send(range: Range, keepOpen: boolean): Promise<UploadResponse | undefined> {
    const { deps, options } = this.job;
    const signal = options.signal;
    const stream = new RangeStream(this.name, range, this.partSize, this.tally);
    const budget = new Budget(deps.retry, (e) => resumable(e, signal) && !this.stop.aborted,
      // Right after a break, the part the broken stream had received whole is still landing: asking at
      // once would send it again. A lost race with such a part is asked about again at once.
      (e) => (RACES.has(e.reason) ? 0 : backoffCap(deps.retry, 1) / 2));
    for (;;) {
      if (stream.broken !== undefined) {
        const now = await deps.unary((o) => deps.uploads.getUpload({ name: this.name }, o), signal);
        if (stream.resume(now.upload!, budget)) {
          return undefined;
        }
      }
      const local: { error?: QuarryError } = {};
      stream.opened();
      // Stopping (the caller's signal, or another stream failed) ends the stream at its next chunk, so the
      // server commits every whole part it received and answers; only a stream that does not end within
      // STOP_GRACE_MS (a stalled connection) is cut.
      const hard = new AbortController();
      let timer: NodeJS.Timeout | undefined;
      const cut = (): void => { timer = setTimeout(() => hard.abort(), STOP_GRACE_MS); };
      const stopping = anySignal(signal, this.stop);
      stopping.addEventListener("abort", cut, { once: true });
      try {
        const response = await deps.uploads.upload(this.requests(stream, keepOpen, local, stopping), {
          signal: hard.signal, timeoutMs: 0,
        });
        if (local.error !== undefined) {
          throw local.error;
        }
        if (signal?.aborted) {
          throw cancelled(signal);
        }
        if (stream.start + stream.sent < range.stop) {
          throw new Stopped("stopped: another stream of this upload failed");
        }
        return response;
      } catch (caught) {
        if (local.error !== undefined) {
          throw local.error;
        }
        if (signal?.aborted) {
          throw cancelled(signal);
        }
        if (this.stop.aborted) {
          throw new Stopped("stopped: another stream of this upload failed");
        }
        const error = fromConnect(caught);
        if (!(error instanceof RpcError)) {
          throw error;
        }
        stream.broken = error;
        const delay = budget.delayAfter(error);
        if (delay === undefined) {
          throw error;
        }
        await sleep(delay, signal);
      } finally {
        stopping.removeEventListener("abort", cut);
        clearTimeout(timer);
      }
    }
  }

  /** The messages of one stream: header, the range's chunks as they are read, then the finish. A local
   * failure ends the stream early (the server keeps its whole parts) and is kept for the caller. */
  private async *requests(stream: RangeStream, keepOpen: boolean, local: { error?: QuarryError },
                          stopping: AbortSignal): AsyncGenerator<UploadRequest> {
    const { range } = stream;
    yield create(UploadRequestSchema, {
      kind: { case: "header", value: { target: { case: "upload", value: this.name }, writeOffset: BigInt(stream.start) } },
    });
    let file;
    try {
      file = await open(this.job.path, "r");
    } catch (error) {
      local.error = new IntegrityError(`${this.job.path} could not be read: ${(error as Error).message}`);
      return;
    }
    try {
      let position = stream.start;
      while (position < range.stop) {
        if (stopping.aborted) {
          return; // without a finish: the server keeps the whole parts and leaves the upload OPEN
        }
        const buffer = Buffer.allocUnsafe(Math.min(this.chunkSize, range.stop - position));
        const { bytesRead } = await file.read(buffer, 0, buffer.length, position);
        if (bytesRead === 0) {
          await this.job.forget();
          local.error = new IntegrityError(`${this.job.path} shrank while it was uploaded; upload it again`);
          return;
        }
        const data = buffer.subarray(0, bytesRead);
        this.hasher.offer(position, data);
        stream.add(bytesRead);
        position += bytesRead;
        yield create(UploadRequestSchema, { kind: { case: "chunk", value: { data } } });
      }
    } finally {
      await file.close();
    }
    if (range.last) {
      // Given with the finish only when this stream stages the file itself; else CompleteUpload carries it.
      const sha256 = keepOpen ? "" : await this.hasher.digest(this.job.options.signal);
      yield create(UploadRequestSchema, { kind: { case: "finish", value: { sha256, keepOpen } } });
    }
  }
}

/** A signal that fires when any of the given ones does. */
function anySignal(...signals: (AbortSignal | undefined)[]): AbortSignal {
  return AbortSignal.any(signals.filter((s): s is AbortSignal => s !== undefined));
}
