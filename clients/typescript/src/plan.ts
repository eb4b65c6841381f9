/**
 * Which byte ranges of a file still have to be sent, cut for parallel streams.
 *
 * The server writes whole parts of `partSizeBytes` (the last one shorter). A stream may start at the
 * upload's committed size or at the first byte of any part not yet written, and writes parts in order
 * from there; so the plan is the missing parts, grouped into runs of consecutive parts, with long runs
 * cut so that every stream gets about the same work (the Python SDK's plan, to the byte).
 */

/** Bytes [start, stop) of the file: whole parts from part number `firstPart`. */
export interface Range {
  start: number;
  stop: number;
  firstPart: number;
  /** The range ends at the end of the file, so its stream sends the finish message. */
  last: boolean;
}

/** Number of parts of a file of `size` bytes (0 for an empty file). */
export function partCount(size: number, partSize: number): number {
  return Math.ceil(size / partSize);
}

/** The ranges still to send, in file order, for at most `streams` streams at a time. */
export function planRanges(size: number, partSize: number, committed: Iterable<number>, streams: number): Range[] {
  if (partSize <= 0) {
    throw new RangeError("partSize must be positive");
  }
  const total = partCount(size, partSize);
  const done = new Set(committed);
  if (total === 0) {
    return done.size ? [] : [{ start: 0, stop: 0, firstPart: 1, last: true }]; // an empty file: only a finish
  }
  const missing: number[] = [];
  for (let number = 1; number <= total; number++) {
    if (!done.has(number)) {
      missing.push(number);
    }
  }
  const longest = Math.ceil(missing.length / Math.max(1, streams));
  const runs: number[][] = [];
  for (const number of missing) {
    const run = runs[runs.length - 1];
    if (run !== undefined && run[run.length - 1] === number - 1 && run.length < longest) {
      run.push(number);
    } else {
      runs.push([number]);
    }
  }
  return runs.map((run) => {
    const first = run[0]!;
    const end = run[run.length - 1]!;
    return { start: (first - 1) * partSize, stop: Math.min(end * partSize, size), firstPart: first, last: end === total };
  });
}

/** A part the server has committed. */
export interface CommittedPart {
  partNumber: bigint | number;
  sizeBytes: bigint | number;
}

/**
 * [bytes of the range's parts already committed, where the range continues]: the first part of the
 * range that is not written, or the range's end when every part is.
 */
export function committedIn(parts: CommittedPart[], partSize: number, range: Range): [number, number] {
  const written = new Map(parts.map((p) => [Number(p.partNumber), Number(p.sizeBytes)]));
  let committed = 0;
  for (const [number, size] of written) {
    const offset = (number - 1) * partSize;
    if (range.start <= offset && offset < range.stop) {
      committed += size;
    }
  }
  let number = range.firstPart;
  while ((number - 1) * partSize < range.stop && written.has(number)) {
    number += 1;
  }
  return [committed, Math.min(range.stop, (number - 1) * partSize)];
}
