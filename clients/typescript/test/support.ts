/**
 * Test helpers: a real Quarry (scripts/test_stack.py: Postgres, Redis, a local store, a server, a worker
 * and an operator token), a TCP proxy that cuts connections, random files.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { open } from "node:fs/promises";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

export const MiB = 1 << 20;

/** The repository root: the nearest directory up from here holding scripts/test_stack.py. */
export function repositoryRoot(): string {
  let directory = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(directory, "scripts", "test_stack.py"))) {
    const parent = dirname(directory);
    if (parent === directory) {
      throw new Error("scripts/test_stack.py not found above the test");
    }
    directory = parent;
  }
  return directory;
}

/** A running Quarry stack. */
export interface Stack {
  address: string;
  /** The operator token `quarry admin bootstrap` issued. */
  token: string;
  work: string;
  process: ChildProcess;
  stop(): Promise<void>;
}

/** Start a stack (settings as QUARRY_NAME=VALUE) and wait for its address, within `timeoutMs`. */
export async function startStack(settings: Record<string, string> = {}, timeoutMs = 120_000): Promise<Stack> {
  const root = repositoryRoot();
  const venv = join(root, ".venv", "bin", "python");
  const python = process.env["QUARRY_TEST_PYTHON"] || (existsSync(venv) ? venv : "python3");
  const args = [join(root, "scripts", "test_stack.py"), ...Object.entries(settings).map(([k, v]) => `${k}=${v}`)];
  const child = spawn(python, args, { cwd: root, stdio: ["pipe", "pipe", "inherit"] });
  const exited = new Promise<number | null>((done) => child.once("exit", (code) => done(code)));
  const line = await new Promise<string>((done, fail) => {
    const timer = setTimeout(() => fail(new Error(`no stack after ${timeoutMs} ms`)), timeoutMs);
    const lines = createInterface({ input: child.stdout! });
    lines.once("line", (text) => {
      clearTimeout(timer);
      done(text);
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      fail(new Error(`test_stack.py exited with ${code} before it printed an address`));
    });
  });
  const { address, token, work } = JSON.parse(line) as { address: string; token: string; work: string };
  return {
    address, token, work, process: child,
    async stop() {
      child.stdin!.end(); // the stack stops when its stdin closes
      const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** A namespace of the test's own. */
export function newNamespace(): string {
  return `t-${randomUUID().replaceAll("-", "").slice(0, 12)}`;
}

/** Write `size` random bytes to `path`; return their sha256. */
export async function writeRandomFile(path: string, size: number): Promise<string> {
  const hash = createHash("sha256");
  const file = await open(path, "w");
  try {
    for (let left = size; left > 0;) {
      const data = randomBytes(Math.min(left, 4 * MiB));
      hash.update(data);
      await file.write(data);
      left -= data.length;
    }
  } finally {
    await file.close();
  }
  return hash.digest("hex");
}

/** The sha256 of a file's bytes. */
export async function sha256Of(path: string): Promise<string> {
  const hash = createHash("sha256");
  const file = await open(path, "r");
  try {
    for await (const chunk of file.createReadStream()) {
      hash.update(chunk as Buffer);
    }
  } finally {
    await file.close().catch(() => undefined);
  }
  return hash.digest("hex");
}

/**
 * A TCP proxy in front of the server that cuts every open connection once `budget` bytes went upstream
 * (or, with `downstream`, came back), `breaks` times; afterwards it forwards faithfully. For
 * broken-connection tests we cannot cause for real (the same proxy as tests/sdk_support.py).
 */
export class BreakingProxy {
  cuts = 0;
  private counted = 0;
  private readonly sockets = new Set<Socket>();
  private readonly server: Server;
  address = "";

  constructor(private readonly target: string, private readonly budget: number, private readonly breaks = 1,
              private readonly downstream = false) {
    this.server = createServer((client) => this.accept(client));
  }

  /** Listen on a free loopback port (or `port`). */
  async start(port = 0): Promise<this> {
    await new Promise<void>((done, fail) => {
      this.server.once("error", fail);
      this.server.listen(port, "127.0.0.1", () => done());
    });
    const bound = this.server.address();
    if (bound === null || typeof bound === "string") {
      throw new Error("proxy has no port");
    }
    this.address = `127.0.0.1:${bound.port}`;
    return this;
  }

  private accept(client: Socket): void {
    const [host, port] = [this.target.slice(0, this.target.lastIndexOf(":")),
      Number(this.target.slice(this.target.lastIndexOf(":") + 1))];
    const upstream = createConnection({ host, port });
    for (const socket of [client, upstream]) {
      this.sockets.add(socket);
      socket.on("error", () => undefined);
      socket.on("close", () => {
        this.sockets.delete(socket);
        client.destroy();
        upstream.destroy();
      });
    }
    this.pump(client, upstream, true);
    this.pump(upstream, client, false);
  }

  private pump(source: Socket, sink: Socket, upstream: boolean): void {
    source.on("data", (data: Buffer) => {
      if (upstream !== this.downstream && this.count(data.length)) {
        this.cut();
        return;
      }
      if (!sink.write(data)) {
        source.pause();
        sink.once("drain", () => source.resume());
      }
    });
  }

  private count(bytes: number): boolean {
    this.counted += bytes;
    if (this.cuts < this.breaks && this.counted >= this.budget) {
      this.cuts += 1;
      this.counted = 0;
      return true;
    }
    return false;
  }

  /** Drop every open connection. */
  cut(): void {
    for (const socket of this.sockets) {
      socket.resetAndDestroy();
    }
    this.sockets.clear();
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((done) => this.server.close(() => done()));
  }
}

/** A loopback port nothing listens on (it was free a moment ago). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", () => done()));
  const bound = server.address();
  await new Promise<void>((done) => server.close(() => done()));
  if (bound === null || typeof bound === "string") {
    throw new Error("no port");
  }
  return bound.port;
}

