/**
 * Resource names from what people write: "sales", a version number, "latest", a uid, or a full name
 * (the same rules as the Python SDK).
 */
import { UsageError } from "./errors.js";

export const LATEST = "latest";

/** `namespaces/{ns}/datasets/{dataset}` for a short name; a full name passes through. */
export function datasetName(namespace: string, dataset: string): string {
  if (dataset.startsWith("namespaces/")) {
    return dataset;
  }
  if (!dataset || dataset.includes("/") || dataset.includes("@")) {
    throw new UsageError(`invalid dataset name ${JSON.stringify(dataset)}`);
  }
  return `namespaces/${namespace}/datasets/${dataset}`;
}

/** `…/datasets/{dataset}/versions/{version}`; a full version name passes through. */
export function versionName(namespace: string, dataset: string, version: number | string = LATEST): string {
  if (typeof version === "string" && version.startsWith("namespaces/")) {
    return version;
  }
  if (dataset.startsWith("namespaces/") && dataset.includes("/versions/")) {
    return dataset;
  }
  const text = String(version).trim() || LATEST;
  if (text.includes("/")) {
    throw new UsageError(`invalid version ${JSON.stringify(version)}`);
  }
  return `${datasetName(namespace, dataset)}/versions/${text}`;
}

/** `namespaces/{ns}/uploads/{uid}` for a uid; a full name passes through. */
export function uploadName(namespace: string, upload: string): string {
  if (upload.startsWith("namespaces/")) {
    return upload;
  }
  if (!upload || upload.includes("/")) {
    throw new UsageError(`invalid upload id ${JSON.stringify(upload)}`);
  }
  return `namespaces/${namespace}/uploads/${upload}`;
}
