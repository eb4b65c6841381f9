/**
 * QuarryClient: the generated service clients on one HTTP/2 connection speaking the gRPC protocol, plus
 * the hand-written operations every user needs (resumable uploads, watching, downloads, previews).
 *
 * Every call carries the token (`authorization: Bearer …`) and the namespace (`x-quarry-namespace`).
 * Unary calls made through the client's own methods get Quarry's typed errors and are retried on
 * UNAVAILABLE and ABORTED (reads, idempotent writes, creates with a request_id); the raw generated
 * clients (`datasets`, `uploads`, `capabilities`, `namespaces`, `tokens`, `audit`) are there for everything
 * else and throw Connect's ConnectError (`fromConnect` converts it).
 */
import { randomUUID } from "node:crypto";

import { createClient, type CallOptions, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { Http2SessionManager, createGrpcTransport } from "@connectrpc/connect-node";

import { resolveConfig, type ClientOptions, type Config } from "./config.js";
import { download, type DownloadOptions, type DownloadResult } from "./download.js";
import { UploadFailed, VersionFailed, fromConnect, RpcError } from "./errors.js";
import { datasetName, uploadName, versionName, LATEST } from "./names.js";
import { Budget, isRetryable, sleep, withRetries } from "./retry.js";
import { ResumeStore } from "./state.js";
import { DEAD, uploadFile, type UploadOptions, type UploadResult } from "./upload.js";
import { CapabilitiesService, type GetCapabilitiesResponse } from "./gen/quarry/v1/capabilities_service_pb.js";
import type { Dataset } from "./gen/quarry/v1/dataset_pb.js";
import { DatasetService, VersionView } from "./gen/quarry/v1/dataset_service_pb.js";
import { UploadState, type Upload } from "./gen/quarry/v1/upload_pb.js";
import { UploadService } from "./gen/quarry/v1/upload_service_pb.js";
import { AuditService } from "./gen/quarry/v1/audit_service_pb.js";
import { NamespaceService } from "./gen/quarry/v1/namespace_service_pb.js";
import { TokenService } from "./gen/quarry/v1/token_service_pb.js";
import { VersionState, type Column, type Version, type VersionFile } from "./gen/quarry/v1/version_pb.js";

/** Request metadata naming the namespace a call acts in (when its request names none). */
export const NAMESPACE_METADATA = "x-quarry-namespace";
/** Request metadata carrying the caller's token: `Bearer qk_<id>_<secret>`. */
export const AUTHORIZATION_METADATA = "authorization";

/** A version of a dataset: a number, "latest", a uid, or a full resource name. */
export type VersionRef = number | string;

/** The first rows of a tabular file. */
export interface Preview {
  columns: Column[];
  /** One object per row, decoded from the response's JSON rows. */
  rows: Record<string, unknown>[];
  rowCount: number;
  totalRows: number;
  /** The same rows as an Arrow IPC stream (for apache-arrow's tableFromIPC). */
  arrowIpcStream: Uint8Array;
}

/** Options of calls that can be stopped. */
export interface CallControl {
  signal?: AbortSignal;
}

/** Whether an upload being waited for reached its end: PROMOTED, a dead state, or VALIDATED when no
 * version will be committed automatically. */
export function waitIsOver(upload: Upload): boolean {
  return DEAD.has(upload.state) || upload.state === UploadState.PROMOTED
    || (upload.state === UploadState.VALIDATED && !upload.autoCommit);
}

/** A client of one Quarry server, acting in one namespace. */
export class QuarryClient {
  readonly config: Config;
  readonly transport: Transport;
  /** The generated DatasetService client (ConnectError on failure). */
  readonly datasets: Client<typeof DatasetService>;
  /** The generated UploadService client (ConnectError on failure). */
  readonly uploads: Client<typeof UploadService>;
  /** The generated CapabilitiesService client (ConnectError on failure). */
  readonly capabilities: Client<typeof CapabilitiesService>;
  /** The generated NamespaceService, TokenService and AuditService clients (ConnectError on failure). */
  readonly namespaces: Client<typeof NamespaceService>;
  readonly tokens: Client<typeof TokenService>;
  readonly audit: Client<typeof AuditService>;
  private readonly sessions: Http2SessionManager;
  private readonly store: ResumeStore;
  private caps: Promise<GetCapabilitiesResponse> | undefined;

  constructor(options: ClientOptions = {}) {
    this.config = resolveConfig(options);
    const { namespace, token } = this.config;
    const metadata: Interceptor = (next) => (request) => {
      request.header.set(NAMESPACE_METADATA, namespace);
      if (token !== undefined) {
        request.header.set(AUTHORIZATION_METADATA, `Bearer ${token}`);
      }
      return next(request);
    };
    // Pings find a dead connection (a silent peer, a cut that sent no reset) within 30 s.
    const { ca, cert, key } = this.config;
    this.sessions = new Http2SessionManager(this.config.baseUrl, { pingIntervalMs: 15_000, pingTimeoutMs: 15_000 },
      this.config.tls ? { ca, cert, key } : undefined);
    this.transport = createGrpcTransport({
      baseUrl: this.config.baseUrl, sessionManager: this.sessions, interceptors: [metadata],
    });
    this.datasets = createClient(DatasetService, this.transport);
    this.uploads = createClient(UploadService, this.transport);
    this.capabilities = createClient(CapabilitiesService, this.transport);
    this.namespaces = createClient(NamespaceService, this.transport);
    this.tokens = createClient(TokenService, this.transport);
    this.audit = createClient(AuditService, this.transport);
    this.store = new ResumeStore(this.config.cacheDir);
  }

  /** The namespace's resource name. */
  get parent(): string {
    return `namespaces/${this.config.namespace}`;
  }

  /** Close the connection; calls in flight fail. */
  close(): void {
    this.sessions.abort();
  }

  /** One unary call with Quarry's errors and a deadline, retried when `retry` (the call is safe to repeat). */
  async unary<T>(call: (options: CallOptions) => Promise<T>, signal?: AbortSignal, retry = true): Promise<T> {
    const budget = new Budget(retry ? this.config.retry : { ...this.config.retry, maxAttempts: 1 });
    return withRetries(budget, async () => {
      try {
        return await call({ signal, timeoutMs: this.config.timeoutMs });
      } catch (error) {
        throw fromConnect(error);
      }
    }, signal);
  }

  /** The server's limits and features (asked once, then remembered). */
  getCapabilities(control: CallControl = {}): Promise<GetCapabilitiesResponse> {
    if (this.caps === undefined) {
      this.caps = this.unary((o) => this.capabilities.getCapabilities({}, o), control.signal);
      this.caps.catch(() => { this.caps = undefined; });
    }
    return this.caps;
  }

  // --- datasets and versions ------------------------------------------------------------------------

  /** Create a dataset (a retried create with the same request_id returns the first). */
  async createDataset(dataset: string, fields: { description?: string; labels?: Record<string, string> } = {},
                      control: CallControl = {}): Promise<Dataset> {
    const requestId = randomUUID();
    const response = await this.unary((o) => this.datasets.createDataset({
      parent: this.parent, datasetId: dataset, dataset: { description: fields.description ?? "",
        labels: fields.labels ?? {} }, requestId }, o), control.signal);
    return response.dataset!;
  }

  /** One dataset, by short or full name. */
  async getDataset(dataset: string, control: CallControl = {}): Promise<Dataset> {
    const name = datasetName(this.config.namespace, dataset);
    return (await this.unary((o) => this.datasets.getDataset({ name }, o), control.signal)).dataset!;
  }

  /** Every dataset of the namespace (all pages). */
  async listDatasets(control: CallControl & { filter?: string } = {}): Promise<Dataset[]> {
    const found: Dataset[] = [];
    let pageToken = "";
    do {
      const page = await this.unary((o) => this.datasets.listDatasets({ parent: this.parent, pageToken,
        filter: control.filter ?? "" }, o), control.signal);
      found.push(...page.datasets);
      pageToken = page.nextPageToken;
    } while (pageToken);
    return found;
  }

  /** One version: its metadata and totals, and with `view: VersionView.FULL` its files too (a version with
   * more files than one answer holds is refused: use listVersionFiles). */
  async getVersion(dataset: string, version: VersionRef = LATEST,
                   control: CallControl & { view?: VersionView } = {}): Promise<Version> {
    const name = versionName(this.config.namespace, dataset, version);
    return (await this.unary((o) => this.datasets.getVersion({ name, view: control.view }, o),
      control.signal)).version!;
  }

  /** The files of a READY version, by path, every page (optionally under a path prefix); all of one version
   * even when asked for "latest" (the first page pins it). */
  async *listVersionFiles(dataset: string, version: VersionRef = LATEST,
                          control: CallControl & { prefix?: string; view?: VersionView } = {}): AsyncGenerator<VersionFile> {
    let parent = versionName(this.config.namespace, dataset, version);
    let pageToken = "";
    do {
      const page = await this.unary((o) => this.datasets.listVersionFiles({ parent, pageToken,
        pathPrefix: control.prefix ?? "", view: control.view }, o), control.signal);
      yield* page.files;
      parent = page.version || parent; // the canonical name of the version listed: later pages read the same one
      pageToken = page.nextPageToken;
    } while (pageToken);
  }

  /** Request a new version from uploads to add or replace and paths to delete; it starts PENDING. */
  async commitVersion(dataset: string, change: { uploads?: string[]; deletePaths?: string[]; message?: string;
    baseVersion?: string; requestId?: string } = {}, control: CallControl = {}): Promise<Version> {
    const request = {
      parent: datasetName(this.config.namespace, dataset),
      uploads: (change.uploads ?? []).map((u) => uploadName(this.config.namespace, u)),
      deletePaths: change.deletePaths ?? [], message: change.message ?? "", baseVersion: change.baseVersion ?? "",
      requestId: change.requestId ?? randomUUID(),
    };
    return (await this.unary((o) => this.datasets.commitVersion(request, o), control.signal)).version!;
  }

  /** The version now (without its files), then at every state change until READY or FAILED (WatchVersion);
   * a broken stream is followed again. */
  async *watchVersion(dataset: string, version: VersionRef = LATEST, control: CallControl = {}): AsyncGenerator<Version> {
    const name = versionName(this.config.namespace, dataset, version);
    for await (const message of this.follow((o) => this.datasets.watchVersion({ name }, o), control)) {
      yield message.version!;
    }
  }

  /** Follow a version (e.g. as commitVersion answered it) to READY and return it (without its files:
   * listVersionFiles has them); a FAILED version throws VersionFailed. */
  async waitVersion(dataset: string, version: VersionRef = LATEST, control: CallControl = {}): Promise<Version> {
    let last: Version | undefined;
    for await (const update of this.watchVersion(dataset, version, control)) {
      last = update;
      if (update.state === VersionState.READY || update.state === VersionState.FAILED) {
        break;
      }
    }
    if (last?.state === VersionState.FAILED) {
      const why = last.failure?.reason ? `: ${last.failure.reason}: ${last.failure.message}` : "";
      throw new VersionFailed(`version ${last.name} FAILED${why}`, last);
    }
    if (last?.state !== VersionState.READY) {
      throw new VersionFailed(`the watch of ${versionName(this.config.namespace, dataset, version)} ended before `
        + "READY", last);
    }
    return last;
  }

  /** The first rows of a tabular file, as objects and as Arrow IPC bytes. */
  async preview(dataset: string, path: string, options: CallControl & { version?: VersionRef; rows?: number } = {},
  ): Promise<Preview> {
    const version = versionName(this.config.namespace, dataset, options.version ?? LATEST);
    const response = await this.unary((o) => this.datasets.previewFile({ version, path, rowLimit: options.rows ?? 0 },
      o), options.signal);
    return {
      columns: response.columns,
      rows: response.jsonRows.map((row) => JSON.parse(row) as Record<string, unknown>),
      rowCount: Number(response.rowCount),
      totalRows: Number(response.totalRows),
      arrowIpcStream: response.arrowIpcStream,
    };
  }

  /** Copy a file of a version to `out`: resumable (a later call continues), sha256-verified, durable. */
  download(dataset: string, path: string, out: string, options: DownloadOptions & { version?: VersionRef } = {},
  ): Promise<DownloadResult> {
    const version = versionName(this.config.namespace, dataset, options.version ?? LATEST);
    return download({ retry: this.config.retry, datasets: this.datasets }, version, path, out, options);
  }

  // --- uploads --------------------------------------------------------------------------------------

  /** Upload a file to a dataset: resumable, over parallel streams for big files, sha256 computed as it
   * goes. Resolves once the upload is STAGED (or later); follow it with watchUpload/waitUpload. */
  uploadFile(path: string, dataset: string, options: UploadOptions = {}): Promise<UploadResult> {
    return uploadFile({
      namespace: this.config.namespace, retry: this.config.retry, store: this.store, uploads: this.uploads,
      unary: (call, signal) => this.unary(call, signal),
      maxChunkBytes: async (signal) => Number((await this.getCapabilities({ signal })).maxChunkBytes),
    }, path, dataset, options);
  }

  /** One upload, by uid or full name. */
  async getUpload(upload: string, control: CallControl = {}): Promise<Upload> {
    const name = uploadName(this.config.namespace, upload);
    return (await this.unary((o) => this.uploads.getUpload({ name }, o), control.signal)).upload!;
  }

  /** Cancel an unfinished upload and delete its bytes. */
  async cancelUpload(upload: string, control: CallControl = {}): Promise<Upload> {
    const name = uploadName(this.config.namespace, upload);
    return (await this.unary((o) => this.uploads.cancelUpload({ name }, o), control.signal)).upload!;
  }

  /** The upload now, then at every state change until a final state; a broken stream is followed again. */
  async *watchUpload(upload: string, control: CallControl = {}): AsyncGenerator<Upload> {
    const name = uploadName(this.config.namespace, upload);
    for await (const message of this.follow((o) => this.uploads.watchUpload({ name }, o), control)) {
      yield message.upload!;
    }
  }

  /** The messages of a server stream, opened again after a break (while the retry budget lasts, renewed by
   * every message). A watch repeats the current state when it opens, so nothing is missed. */
  private async *follow<M>(open: (options: CallOptions) => AsyncIterable<M>, control: CallControl): AsyncGenerator<M> {
    // A broken transport has no Quarry reason; a refusal (NOT_FOUND, INVALID_ARGUMENT…) has one and ends it.
    const budget = new Budget(this.config.retry, (e) => isRetryable(e)
      || (!e.reason && ["INTERNAL", "UNKNOWN", "CANCELLED"].includes(e.status)));
    for (;;) {
      try {
        for await (const message of open({ signal: control.signal, timeoutMs: 0 })) {
          budget.progressed();
          yield message;
        }
        return;
      } catch (caught) {
        const error = fromConnect(caught);
        const delay = error instanceof RpcError && !control.signal?.aborted ? budget.delayAfter(error) : undefined;
        if (delay === undefined) {
          throw error;
        }
        await sleep(delay, control.signal);
      }
    }
  }

  /** Wait until the upload is PROMOTED (or VALIDATED when nothing commits it); UploadFailed if it died. */
  async waitUpload(upload: string, control: CallControl = {}): Promise<Upload> {
    let last: Upload | undefined;
    for await (const update of this.watchUpload(upload, control)) {
      last = update;
      if (waitIsOver(update)) {
        break;
      }
    }
    if (last === undefined || !waitIsOver(last)) {
      last = await this.getUpload(upload, control); // the stream ended without a final state: ask once more
    }
    if (DEAD.has(last.state)) {
      const why = last.failure?.reason ? `: ${last.failure.reason}: ${last.failure.message}` : "";
      throw new UploadFailed(`upload ${last.name} ended ${UploadState[last.state]}${why}`, last);
    }
    return last;
  }
}
