/** The committed generated code is what `npm run generate` makes from proto/ now. */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { delimiter, join, relative } from "node:path";
import { test } from "node:test";

import { repositoryRoot } from "./support.js";

async function files(root: string): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  for (const entry of await readdir(root, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) {
      const path = join(entry.parentPath, entry.name);
      found.set(relative(root, path), await readFile(path, "utf8"));
    }
  }
  return found;
}

test("the generated TypeScript is current: run `npm run generate` in clients/typescript when this fails", async () => {
  const root = repositoryRoot();
  const pkg = join(root, "clients", "typescript");
  const out = await mkdtemp(join(tmpdir(), "quarry-gen-"));
  try {
    const bin = join(root, "node_modules", ".bin");
    execFileSync(join(bin, "buf"), ["generate", "--template", "buf.gen.yaml", "-o", out], {
      cwd: pkg, env: { ...process.env, PATH: `${bin}${delimiter}${process.env["PATH"] ?? ""}` }, stdio: "pipe",
    });
    const fresh = await files(join(out, "src", "gen"));
    const committed = await files(join(pkg, "src", "gen"));
    assert.ok(fresh.size >= 8, `generated ${fresh.size} files`);
    assert.deepEqual([...committed.keys()].sort(), [...fresh.keys()].sort());
    for (const [path, text] of fresh) {
      assert.ok(committed.get(path) === text, `src/gen/${path} is stale`);
    }
  } finally {
    await rm(out, { recursive: true, force: true });
  }
});
