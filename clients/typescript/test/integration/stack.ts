/**
 * The real service for integration tests: the OneRoster simulator, the API and a Celery worker,
 * started as the Procfile writes them, on the test Redis with a key prefix of their own.
 *
 * Environment: `CB_PYTHON` (default `python` on PATH: the repo's virtualenv), `CB_TEST_REDIS_PORT`
 * (default 6379), `CB_TEST_REDIS_DB` (9) and `CB_TEST_BROKER_DB` (10).
 */
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, isAbsolute, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

export const ROOT = fileURLToPath(new URL("../../../../../", import.meta.url));
const PYTHON = process.env.CB_PYTHON ?? "python";
const REDIS_PORT = Number(process.env.CB_TEST_REDIS_PORT ?? "6379");
const REDIS_DB = Number(process.env.CB_TEST_REDIS_DB ?? "9");
const BROKER_DB = Number(process.env.CB_TEST_BROKER_DB ?? "10");

export const TOKENS = { all: "ts-all", readOnly: "ts-read" } as const;
const SIM_CLIENT = { id: "demo-client", secret: "demo-secret" };

interface Running {
  readonly name: string;
  readonly child: ChildProcess;
  readonly log: string;
}

export interface Stack {
  readonly apiUrl: string;
  readonly simUrl: string;
  readonly prefix: string;
  /** A write to the simulator, as the course builder makes it (with its own OAuth token). */
  simWrite(method: "PUT" | "POST", path: string, body: unknown): Promise<unknown>;
  /** The last lines every process wrote (for failure messages). */
  logs(): string;
  stop(): Promise<void>;
}

function procfile(name: string): string {
  for (const line of readFileSync(join(ROOT, "Procfile"), "utf8").split("\n")) {
    const at = line.indexOf(":");
    if (at > 0 && line.slice(0, at).trim() === name) return line.slice(at + 1).trim();
  }
  throw new Error(`no ${name} line in the Procfile`);
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => resolve(typeof address === "object" && address ? address.port : 0));
    });
  });
}

function envPath(): string {
  const path = process.env.PATH ?? "";
  return isAbsolute(PYTHON) ? `${dirname(PYTHON)}:${path}` : path;
}

function start(name: string, command: string, env: NodeJS.ProcessEnv, dir: string): Running {
  const log = join(dir, `${name}.log`);
  // sh -c 'exec <line> >> log 2>&1' in its own process group, so stop() ends the whole tree.
  const child = spawn("sh", ["-c", `exec ${command} >>"${log}" 2>&1`], {
    cwd: ROOT,
    env: { ...env, PATH: envPath() },
    detached: true,
    stdio: "ignore",
  });
  return { name, child, log };
}

function tail(path: string, chars = 3000): string {
  try {
    return readFileSync(path, "utf8").slice(-chars);
  } catch {
    return "(no log)";
  }
}

async function waitFor(what: string, probe: () => Promise<boolean>, logs: () => string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await probe().catch(() => false)) return;
    await new Promise((resolve) => setTimeout(resolve, 150));
  }
  throw new Error(`${what} within ${timeoutMs} ms; logs:\n${logs()}`);
}

const ok = async (url: string) => (await fetch(url, { signal: AbortSignal.timeout(2000) })).ok;

/** Every key of this run: the prefix in the store DB, and in the broker DB (the durable schedule). */
async function deleteKeys(prefix: string): Promise<void> {
  const script = [
    "import redis, sys",
    "port, prefix = int(sys.argv[1]), sys.argv[2]",
    "for db in map(int, sys.argv[3:]):",
    "    r = redis.Redis(port=port, db=db)",
    "    keys = list(r.scan_iter(match=prefix + '*', count=1000))",
    "    if keys: r.delete(*keys)",
  ].join("\n");
  await promisify(execFile)(PYTHON, ["-c", script, String(REDIS_PORT), prefix, String(REDIS_DB), String(BROKER_DB)], {
    env: { ...process.env, PATH: envPath() },
  });
}

export async function startStack(): Promise<Stack> {
  const dir = mkdtempSync(join(tmpdir(), "cb-ts-stack-"));
  const prefix = `cbts:${randomBytes(5).toString("hex")}:`;
  const [simPort, apiPort] = [await freePort(), await freePort()];
  const simUrl = `http://127.0.0.1:${simPort}`;
  const apiUrl = `http://127.0.0.1:${apiPort}`;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    CB_REDIS_URL: `redis://127.0.0.1:${REDIS_PORT}/${REDIS_DB}`,
    CB_BROKER_URL: `redis://127.0.0.1:${REDIS_PORT}/${BROKER_DB}`,
    CB_KEY_PREFIX: prefix,
    CB_ONEROSTER_BASE_URL: simUrl,
    CB_API_TOKENS: JSON.stringify({ [TOKENS.all]: ["read", "events", "attempts"], [TOKENS.readOnly]: ["read"] }),
    CB_ATTEMPT_POINTER_TEMPLATE: `${prefix}assess:active:{userId}:{resourceId}`,
    CB_ATTEMPT_STATE_TEMPLATE: `${prefix}assess:state:{userId}:{resourceId}:{attemptNumber}`,
    CB_ATTEMPT_INDEX_TEMPLATE: `${prefix}assess:attempts:{userId}:{resourceId}`,
    CB_ATTEMPT_HWM_TEMPLATE: `${prefix}assess:hwm:{userId}:{resourceId}`,
    CB_WORKER_METRICS_PORT: "0",
    CB_LOG_FORMAT: "json",
  };
  const running: Running[] = [];
  const logs = () => running.map((r) => `--- ${r.name}\n${tail(r.log)}`).join("\n");
  const stop = async () => {
    await Promise.all(running.map((r) => stopProcess(r.child)));
    await deleteKeys(prefix);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    running.push(start("simulator", `${PYTHON} -m worker.simulator --port ${simPort} --courses 3`, env, dir));
    running.push(start("web", procfile("web"), { ...env, PORT: String(apiPort) }, dir));
    running.push(start("worker", procfile("worker"), env, dir));
    await waitFor("the simulator answering", () => ok(`${simUrl}/_sim/health`), logs);
    await waitFor("the API ready", () => ok(`${apiUrl}/readyz`), logs);
    const worker = running[2]!;
    await waitFor("the worker ready", async () => readFileSync(worker.log, "utf8").includes("ready."), logs);
  } catch (error) {
    await stop();
    throw error;
  }
  let simToken: string | undefined;
  const simWrite = async (method: "PUT" | "POST", path: string, body: unknown) => {
    if (simToken === undefined) {
      const form = new URLSearchParams({ grant_type: "client_credentials", client_id: SIM_CLIENT.id, client_secret: SIM_CLIENT.secret });
      const answer = await fetch(`${simUrl}/oauth/token`, { method: "POST", body: form });
      simToken = ((await answer.json()) as { access_token: string }).access_token;
    }
    const answer = await fetch(simUrl + path, {
      method,
      headers: { authorization: `Bearer ${simToken}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!answer.ok) throw new Error(`simulator ${method} ${path}: ${answer.status} ${await answer.text()}`);
    return answer.json();
  };
  return { apiUrl, simUrl, prefix, simWrite, logs, stop };
}

async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.pid === undefined) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const signal = (name: NodeJS.Signals) => {
    try {
      process.kill(-child.pid!, name);
    } catch {
      // already gone
    }
  };
  signal("SIGTERM");
  const timer = setTimeout(() => signal("SIGKILL"), 10_000);
  await exited;
  clearTimeout(timer);
}
