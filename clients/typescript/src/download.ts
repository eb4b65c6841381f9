/**
 * Downloads into a partial file that a later call continues, verified by sha256 before it is renamed
 * (the Python SDK's rules and file names, so either client continues the other's partial download).
 *
 * Bytes go to `OUT.partial`, and `OUT.partial.json` records where they come from (version, path) and
 * the file's sha256 and size as ReadFile reported them. A later download of the same source first reads
 * one byte to learn whether the file is still the same: if its sha256 differs (e.g. "latest" moved on),
 * it starts over; if not, it continues at the partial file's size. A stream that breaks is continued at
 * the first byte not yet written. Every byte is written and the file fsynced before the rename: a
 * download that reports success has its bytes on disk.
 */
import { createHash, type Hash } from "node:crypto";
import { mkdir, open, readFile, rename, rm, stat, writeFile, type FileHandle } from "node:fs/promises";
import { dirname } from "node:path";

import { Code, type Client } from "@connectrpc/connect";

import { IntegrityError, RpcError, fromConnect } from "./errors.js";
import { Budget, cancelled, isRetryable, sleep, type RetryPolicy } from "./retry.js";
import { DatasetService, type ReadFileResponse } from "./gen/quarry/v1/dataset_service_pb.js";

const EMPTY_SHA256 = createHash("sha256").digest("hex");

/** Options of download. */
export interface DownloadOptions {
  /** Called with (bytes on disk, file size) as bytes arrive. */
  onProgress?: (done: number, total: number) => void;
  /** Stops the download; the partial file stays for a later call to continue. */
  signal?: AbortSignal;
}

/** What download did. */
export interface DownloadResult {
  path: string;
  size: number;
  sha256: string;
  /** Bytes received by this call. */
  bytesReceived: number;
  /** Bytes an earlier call had written, kept. */
  bytesResumed: number;
}

/** What the downloader needs from the client. */
export interface DownloadDeps {
  retry: RetryPolicy;
  datasets: Client<typeof DatasetService>;
}

interface Saved {
  source: string;
  sha256: string;
  size: number;
}

/** Copy a file of a version to `out`, continuing an interrupted earlier download, and verify its sha256. */
export async function download(deps: DownloadDeps, version: string, path: string, out: string,
                               options: DownloadOptions = {}): Promise<DownloadResult> {
  const state = new PartialFile(out, `${version}:${path}`);
  await state.open();
  try {
    const budget = new Budget(deps.retry, (e) => isRetryable(e) || brokenStream(e));
    while (!state.complete) {
      try {
        const { offset, limit } = state.nextRead();
        let messages = 0;
        for await (const message of deps.datasets.readFile({ version, path, offset: BigInt(offset),
          limit: BigInt(limit) }, { signal: options.signal, timeoutMs: 0 })) {
          messages += 1;
          if (!(await state.accept(message))) {
            break; // the file changed since the partial download began: read it again from byte 0
          }
          budget.progressed();
          options.onProgress?.(state.position, state.size ?? 0);
        }
        await state.readDone(messages);
      } catch (caught) {
        if (options.signal?.aborted) {
          throw cancelled(options.signal);
        }
        const error = fromConnect(caught);
        const delay = error instanceof RpcError ? budget.delayAfter(error) : undefined;
        if (delay === undefined) {
          throw error;
        }
        await sleep(delay, options.signal);
      }
    }
    return await state.finish();
  } finally {
    await state.close();
  }
}

function brokenStream(error: RpcError): boolean {
  // A reset HTTP/2 stream arrives as INTERNAL, UNKNOWN or CANCELLED without an ErrorInfo (a reset connection
  // as ABORTED, which isRetryable covers): Quarry's own errors always carry a reason, the transport's never do.
  return (error.code === Code.Internal || error.code === Code.Unknown || error.code === Code.Canceled)
    && !error.reason;
}

/** The partial file of one download, its running sha256, and what the server said about the file. */
class PartialFile {
  readonly partial: string;
  readonly meta: string;
  sha256 = "";
  size: number | undefined;
  position = 0;
  resumed = 0;
  received = 0;
  private checked = true; // whether the server's file is known to be the partial file's
  private digest: Hash = createHash("sha256");
  private file: FileHandle | undefined;

  constructor(readonly out: string, readonly source: string) {
    this.partial = `${out}.partial`;
    this.meta = `${out}.partial.json`;
  }

  get complete(): boolean {
    return this.size !== undefined && this.position >= this.size;
  }

  async open(): Promise<void> {
    await mkdir(dirname(this.out), { recursive: true });
    const saved = await this.saved();
    this.file = await open(this.partial, "a+"); // created if missing, kept if not
    await this.file.close();
    this.file = await open(this.partial, "r+");
    if (saved !== undefined) {
      this.sha256 = saved.sha256;
      this.size = saved.size;
      this.position = Math.min((await stat(this.partial)).size, saved.size);
      await this.hashPrefix();
    }
    await this.file.truncate(this.position);
    this.resumed = this.position;
    this.checked = this.position === 0;
  }

  private async saved(): Promise<Saved | undefined> {
    try {
      const data = JSON.parse(await readFile(this.meta, "utf8")) as Partial<Saved>;
      if (data.source === this.source && typeof data.sha256 === "string" && typeof data.size === "number") {
        return { source: data.source, sha256: data.sha256, size: data.size };
      }
    } catch {
      // no earlier download of this source
    }
    return undefined;
  }

  private async hashPrefix(): Promise<void> {
    const buffer = Buffer.allocUnsafe(8 << 20);
    for (let offset = 0; offset < this.position;) {
      const { bytesRead } = await this.file!.read(buffer, 0, Math.min(buffer.length, this.position - offset), offset);
      if (bytesRead === 0) {
        this.position = offset;
        break;
      }
      this.digest.update(buffer.subarray(0, bytesRead));
      offset += bytesRead;
    }
  }

  /** The next ReadFile: from the first byte not yet written, or only the first byte while the partial file
   * is not known to hold the server's file. */
  nextRead(): { offset: number; limit: number } {
    return this.checked ? { offset: this.position, limit: 0 } : { offset: 0, limit: 1 };
  }

  /** Write one message at the current position. False when the file changed: it starts over. */
  async accept(message: ReadFileResponse): Promise<boolean> {
    if (this.sha256 && message.sha256 !== this.sha256) {
      await this.restart();
      return false;
    }
    if (!this.checked) {
      this.checked = true; // the first byte again, of the same file: the partial file stands
      return true;
    }
    if (!this.sha256) {
      this.sha256 = message.sha256;
      this.size = Number(message.fileSizeBytes);
      await writeFile(this.meta, JSON.stringify({ source: this.source, sha256: this.sha256, size: this.size }));
    }
    if (Number(message.offset) !== this.position) {
      throw new IntegrityError(`ReadFile sent bytes at offset ${message.offset}; expected ${this.position}`);
    }
    await this.write(message.data);
    this.digest.update(message.data);
    this.position += message.data.length;
    this.received += message.data.length;
    return true;
  }

  private async write(data: Uint8Array): Promise<void> {
    let view = data;
    let at = this.position;
    while (view.length > 0) {
      const { bytesWritten } = await this.file!.write(view, 0, view.length, at);
      if (bytesWritten === 0) {
        throw new IntegrityError(`${this.partial}: the file system took none of the bytes written`);
      }
      view = view.subarray(bytesWritten);
      at += bytesWritten;
    }
  }

  /** A read ended. One that sent no message: only an empty file does that. */
  async readDone(messages: number): Promise<void> {
    if (messages > 0) {
      return;
    }
    if (!this.checked) {
      await this.restart(); // not even a first byte: the file is empty now, the partial file is not
    } else if (this.position === 0 && (this.size === undefined || this.size === 0)) {
      this.sha256 = this.sha256 || EMPTY_SHA256;
      this.size = 0;
    } else if (!this.complete) {
      throw new IntegrityError(`ReadFile sent nothing at offset ${this.position} of ${this.size} bytes`);
    }
  }

  private async restart(): Promise<void> {
    await this.file!.truncate(0);
    this.digest = createHash("sha256");
    this.sha256 = "";
    this.size = undefined;
    this.position = 0;
    this.resumed = 0;
    this.checked = true;
  }

  /** Check size and sha256, make the bytes durable, then move the partial file to its name. */
  async finish(): Promise<DownloadResult> {
    const got = this.digest.digest("hex");
    if (got !== this.sha256 || this.position !== this.size) {
      await this.close();
      await rm(this.partial, { force: true });
      await rm(this.meta, { force: true });
      throw new IntegrityError(`downloaded ${this.source} has sha256 ${got} (${this.position} bytes), the server `
        + `said ${this.sha256} (${this.size} bytes); the partial file was removed`);
    }
    await this.file!.sync();
    await this.file!.close();
    this.file = undefined;
    await rename(this.partial, this.out);
    await syncDirectory(dirname(this.out));
    await rm(this.meta, { force: true });
    return { path: this.out, size: this.position, sha256: this.sha256, bytesReceived: this.received,
      bytesResumed: this.resumed };
  }

  /** Close the partial file: it stays for a later call to continue, unless it holds nothing. */
  async close(): Promise<void> {
    if (this.file !== undefined) {
      await this.file.close();
      this.file = undefined;
      if (this.position === 0) {
        await rm(this.partial, { force: true });
        await rm(this.meta, { force: true });
      }
    }
  }
}

/** Make a rename in `directory` durable, where the platform can. */
async function syncDirectory(directory: string): Promise<void> {
  try {
    const handle = await open(directory, "r");
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    // not on every platform
  }
}
