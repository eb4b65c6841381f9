/**
 * Quarry's TypeScript client: `new QuarryClient({address, namespace})`, then `uploadFile`, `waitUpload`,
 * `download`, `preview` and the rest; the generated messages and service descriptors of every
 * `quarry.v1` service are re-exported under `pb`.
 */
export { QuarryClient, AUTHORIZATION_METADATA, NAMESPACE_METADATA, waitIsOver } from "./client.js";
export type { CallControl, Preview, VersionRef } from "./client.js";
export { resolveConfig, cacheDir, DEFAULT_ADDRESS, DEFAULT_NAMESPACE } from "./config.js";
export type { ClientOptions, Config } from "./config.js";
export { checkToken, credentialsPath, readCredentials } from "./credentials.js";
export type { CredentialsFile } from "./credentials.js";
export * from "./errors.js";
export type { DownloadOptions, DownloadResult } from "./download.js";
export { datasetName, versionName, uploadName, LATEST } from "./names.js";
export { planRanges, partCount, committedIn } from "./plan.js";
export type { Range } from "./plan.js";
export { DEFAULT_RETRY, Budget, isRetryable, backoffCap } from "./retry.js";
export type { RetryPolicy } from "./retry.js";
export { UPLOAD_METADATA, DEAD, STAGED_OR_LATER, resumable } from "./upload.js";
export type { ProgressCallback, UploadOptions, UploadResult } from "./upload.js";
export * as pb from "./pb.js";
