/**
 * Resume state of uploads, kept on disk so a restarted process continues where the last one stopped.
 *
 * One small JSON file per upload under `{cacheDir}/node-uploads/`, named by a hash of the file's identity
 * (absolute path, size, mtime in ns) and its target (namespace, dataset, path): a file that changed gets a
 * new identity, so stale state is never applied to new bytes, and the server's GetUpload is checked
 * before any state is trusted. Losing the cache costs only the resume, so write failures are ignored.
 */
import { createHash, randomUUID } from "node:crypto";
import { mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";

/** What says "the same bytes" without reading them. */
export interface FileIdentity {
  path: string;
  size: number;
  mtimeNs: string;
}

/** The identity of a file as it is now. */
export async function identityOf(path: string): Promise<FileIdentity> {
  const absolute = resolve(path);
  const info = await stat(absolute, { bigint: true });
  return { path: absolute, size: Number(info.size), mtimeNs: info.mtimeNs.toString() };
}

/** Whether two identities are of the same bytes. */
export function sameIdentity(a: FileIdentity, b: FileIdentity): boolean {
  return a.path === b.path && a.size === b.size && a.mtimeNs === b.mtimeNs;
}

/** What a resumed upload needs: the upload's name once created, and the request_id of its create. */
export interface ResumeState {
  upload: string;
  requestId: string;
}

/** Resume states in a directory, one JSON file each. */
export class ResumeStore {
  readonly directory: string;

  constructor(cacheDir: string) {
    this.directory = join(cacheDir, "node-uploads");
  }

  /** The state's file name for this file and target. */
  static key(identity: FileIdentity, namespace: string, dataset: string, dest: string): string {
    const text = JSON.stringify([identity.path, identity.size, identity.mtimeNs, namespace, dataset, dest]);
    return createHash("sha256").update(text).digest("hex").slice(0, 40);
  }

  private file(key: string): string {
    return join(this.directory, `${key}.json`);
  }

  /** The saved state, or a new one (with a fresh request_id) when there is none or it is unreadable. */
  async load(key: string): Promise<ResumeState> {
    try {
      const data = JSON.parse(await readFile(this.file(key), "utf8")) as Partial<ResumeState>;
      if (typeof data.upload === "string" && typeof data.requestId === "string" && data.requestId) {
        return { upload: data.upload, requestId: data.requestId };
      }
    } catch {
      // none yet, or unreadable: start afresh
    }
    return { upload: "", requestId: randomUUID() };
  }

  /** Write the state atomically (a killed process leaves the old file or the new one, never half). */
  async save(key: string, state: ResumeState): Promise<void> {
    try {
      await mkdir(this.directory, { recursive: true });
      const temporary = `${this.file(key)}.${process.pid}.tmp`;
      await writeFile(temporary, JSON.stringify(state));
      await rename(temporary, this.file(key));
    } catch {
      // losing the state costs only the resume
    }
  }

  /** Forget the state (the upload finished or cannot be resumed). */
  async delete(key: string): Promise<void> {
    await rm(this.file(key), { force: true }).catch(() => undefined);
  }
}
