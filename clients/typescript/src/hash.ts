/**
 * SHA-256 of a file computed while it is sent: the bytes a stream sends in file order are hashed as they
 * go, and only what no stream offered in order (a resumed upload's committed prefix, the ranges of
 * parallel streams) is read from disk, in the background, at the speed of the disk rather than the network.
 */
import { createHash, type Hash } from "node:crypto";
import { open } from "node:fs/promises";

const BLOCK = 8 << 20;

/** The running sha256 of bytes [0, position) of one file. */
export class FileHasher {
  private readonly hash: Hash = createHash("sha256");
  private hex: string | undefined;
  /** Bytes hashed so far, from offset 0 without a gap. */
  position = 0;

  constructor(private readonly path: string, readonly size: number) {}

  /** Bytes at `offset` that are being sent: hashed when they continue the hash (overlap is skipped). */
  offer(offset: number, data: Uint8Array): void {
    if (offset <= this.position && this.position < offset + data.length) {
      this.hash.update(data.subarray(this.position - offset));
      this.position = offset + data.length;
    }
  }

  /** Read from the file and hash what nobody offered, up to `until`. Safe to run beside streams that offer
   * (JavaScript runs one of them at a time between awaits, so each block continues the hash or is skipped). */
  async catchUp(until: number = this.size, signal?: AbortSignal): Promise<void> {
    if (this.position >= until) {
      return;
    }
    const file = await open(this.path, "r");
    try {
      while (this.position < until) {
        signal?.throwIfAborted();
        const offset = this.position;
        const buffer = Buffer.allocUnsafe(Math.min(BLOCK, until - offset));
        const { bytesRead } = await file.read(buffer, 0, buffer.length, offset);
        if (bytesRead === 0) {
          throw new Error(`${this.path} ended at byte ${offset} while it was hashed`);
        }
        this.offer(offset, buffer.subarray(0, bytesRead));
      }
    } finally {
      await file.close();
    }
  }

  /** The lower-case hex sha256 of the whole file (reading what is still missing). */
  async digest(signal?: AbortSignal): Promise<string> {
    if (this.hex === undefined) {
      await this.catchUp(this.size, signal);
      this.hex = this.hash.digest("hex");
    }
    return this.hex;
  }
}

/** The sha256 of a whole file, read in blocks. */
export async function sha256File(path: string, signal?: AbortSignal): Promise<string> {
  const file = await open(path, "r");
  let size: number;
  try {
    size = (await file.stat()).size;
  } finally {
    await file.close();
  }
  return new FileHasher(path, size).digest(signal);
}
