// Helpers for the browser tests: a real ssehub process, a headless Chromium, publishing, polling.
//
// The hub is the debug binary (`cargo build`; ./scripts/test builds it), or $SSEHUB_BIN.
// Chromium is Debian's /usr/bin/chromium (./scripts/browser-deps installs it), or $CHROMIUM_BIN.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
export const hubBin = process.env.SSEHUB_BIN || `${repoRoot}target/debug/ssehub`;
export const chromiumBin = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

const LISTENING = /^ssehub: listening on (https?:\/\/127\.0\.0\.1:(\d+))\s*$/;
// Printed before the listening line: the loopback listener where publishing needs no token.
const PUBLISH_LISTENER = /^ssehub: publish without a token on (http:\/\/127\.0\.0\.1:\d+)\/publish/;
const START_TIMEOUT_MS = 15000;
const STOP_TIMEOUT_MS = 5000;

// Hubs still running; killed if this test process goes away without stopping them.
const running = new Set();
process.on('exit', () => {
  for (const proc of running) proc.kill('SIGKILL');
});
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(signal, () => {
    for (const proc of running) proc.kill('SIGKILL');
    process.kill(process.pid, signal); // our handler is gone: the default action ends us
  });
}

/**
 * Starts `ssehub serve --listen 127.0.0.1:0 ...args` (or the `--listen` in `args`, to restart a
 * hub on the same port) with no SSEHUB_* variables in its environment, and waits for
 * `ssehub: listening on http://127.0.0.1:PORT` on its stderr.
 *
 * Returns { url, port, publishUrl, proc, stderr(), stop() }: `publishUrl` is the hub's loopback
 * publish listener (publishing there needs no token; on `url` it does). `proc.stdin` is a pipe (for `--stdin`);
 * `stderr()` is everything the hub has written there so far; `stop()` sends SIGTERM, waits for the
 * exit (SIGKILL after 5 s) and resolves to { code, signal }.
 */
export async function startHub(args = []) {
  if (!existsSync(hubBin)) {
    throw new Error(`no ssehub binary at ${hubBin}: run \`cargo build\` (or set SSEHUB_BIN)`);
  }
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([key]) => !key.startsWith('SSEHUB_')),
  );
  const listen = args.includes('--listen') ? [] : ['--listen', '127.0.0.1:0'];
  const publishListen = args.includes('--publish-listen') ? [] : ['--publish-listen', '127.0.0.1:0'];
  const proc = spawn(hubBin, ['serve', ...listen, ...publishListen, ...args], {
    env,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  running.add(proc);
  const exited = new Promise((resolve) => {
    proc.once('exit', (code, signal) => {
      running.delete(proc);
      resolve({ code, signal });
    });
  });
  proc.stdin.on('error', () => {}); // EPIPE once the hub is gone is no test's concern
  proc.stdout.resume(); // keep both pipes drained so the hub never blocks on a write
  // A hub a test forgot to stop must not keep the test process alive (the exit hook kills it);
  // while we wait for it to start or stop, a timer keeps the event loop going.
  proc.unref();
  for (const pipe of [proc.stdin, proc.stdout, proc.stderr]) pipe.unref();

  let stderr = '';
  proc.stderr.setEncoding('utf8');
  let publishUrl;
  const listening = new Promise((resolve, reject) => {
    let pending = '';
    const timer = setTimeout(() => {
      reject(new Error(`ssehub did not report listening within ${START_TIMEOUT_MS} ms; stderr:\n${stderr}`));
    }, START_TIMEOUT_MS);
    proc.stderr.on('data', (chunk) => {
      stderr += chunk;
      pending += chunk;
      let newline;
      while ((newline = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, newline);
        pending = pending.slice(newline + 1);
        const publishMatch = PUBLISH_LISTENER.exec(line);
        if (publishMatch) publishUrl = publishMatch[1];
        const match = LISTENING.exec(line);
        if (match) {
          clearTimeout(timer);
          resolve({ url: match[1], port: Number(match[2]), publishUrl });
        }
      }
    });
    proc.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot start ${hubBin}: ${err.message}`));
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`ssehub exited (code ${code}, signal ${signal}) before listening; stderr:\n${stderr}`));
    });
  });

  const stop = async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return exited;
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), STOP_TIMEOUT_MS);
    try {
      return await exited;
    } finally {
      clearTimeout(timer);
    }
  };

  let address;
  try {
    address = await listening;
  } catch (err) {
    await stop();
    throw err;
  }
  return { ...address, proc, stderr: () => stderr, stop };
}

/** Launches a headless Chromium (Debian's, not a Playwright download). Close it when done. */
export async function launchBrowser() {
  return chromium.launch({
    executablePath: chromiumBin,
    headless: true,
    args: [
      '--no-sandbox', // tests run as root in CI containers, where the sandbox cannot start
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

async function answer(response, what) {
  const text = await response.text();
  if (!response.ok) {
    throw new Error(`${what}: HTTP ${response.status} ${response.statusText}: ${text}`);
  }
  return JSON.parse(text);
}

/**
 * Publishes one event with a raw body: POST /publish?topic=..&event=.. with `data` as the body
 * (a string, bytes, or anything else as its JSON text). `topic` may be a string or an array;
 * all fields are optional. Resolves to the hub's JSON answer ({ id, subscribers }); throws on
 * a non-2xx status.
 */
export async function publish(hubUrl, { topic, event, data = '', retry, token } = {}) {
  const url = new URL('/publish', hubUrl);
  for (const t of [topic ?? []].flat()) url.searchParams.append('topic', t);
  if (event !== undefined) url.searchParams.set('event', event);
  if (retry !== undefined) url.searchParams.set('retry', String(retry));
  const body = typeof data === 'string' || data instanceof Uint8Array ? data : JSON.stringify(data);
  const headers = { 'content-type': 'text/plain; charset=utf-8' };
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(url, { method: 'POST', headers, body });
  return answer(response, `publish to ${url}`);
}

/**
 * Publishes events as one JSON array (all or nothing): each { topic, event, data, id?, retry? }
 * as the hub's JSON publishing takes it. Resolves to { ids, subscribers }; throws on non-2xx.
 */
export async function publishBatch(hubUrl, events, { token } = {}) {
  const url = new URL('/publish', hubUrl);
  const headers = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(url, { method: 'POST', headers, body: JSON.stringify(events) });
  return answer(response, `publish batch to ${url}`);
}

/** The hub's open event streams right now (`ssehub_clients` from GET /metrics). */
export async function clients(hubUrl) {
  const response = await fetch(new URL('/metrics', hubUrl));
  const text = await response.text();
  if (!response.ok) throw new Error(`GET /metrics: HTTP ${response.status}: ${text}`);
  const match = /^ssehub_clients (\d+)$/m.exec(text);
  if (!match) throw new Error(`no ssehub_clients in GET /metrics:\n${text}`);
  return Number(match[1]);
}

/**
 * Polls `fn` (sync or async) until it returns a truthy value, which it resolves to. Errors thrown
 * by `fn` count as "not yet"; on timeout the last one (if any) is in the message.
 */
export async function waitFor(fn, { timeout = 10000, interval = 25, message } = {}) {
  const deadline = Date.now() + timeout;
  let lastError;
  for (;;) {
    try {
      const value = await fn();
      if (value) return value;
      lastError = undefined;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const what = message ?? fn.toString();
      const why = lastError ? `; last error: ${lastError.message ?? lastError}` : '';
      throw new Error(`waitFor timed out after ${timeout} ms: ${what}${why}`);
    }
    await new Promise((resolve) => setTimeout(resolve, interval));
  }
}
