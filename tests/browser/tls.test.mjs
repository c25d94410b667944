// TLS and HTTP/2 in a real Chromium: over https the browser speaks HTTP/2 and one connection
// carries every EventSource of the origin; over plain HTTP/1.1 it opens at most 6 connections per
// origin, so the 7th EventSource and after wait, CONNECTING, for as long as the first 6 stay open.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { clients, launchBrowser, publish, startHub, waitFor } from './harness.mjs';

const SOURCES = 20;

let browser;
let dir;
before(async () => {
  browser = await launchBrowser();
  // A certificate made for this test (openssl, which Debian has with its base system).
  dir = mkdtempSync(join(tmpdir(), 'ssehub-tls-'));
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost',
    '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
  ], { stdio: 'ignore' });
});
after(async () => {
  await browser?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/**
 * Loads a page of the hub at `origin`, opens SOURCES EventSources to it, publishes one event
 * and returns what each source did: [{ state, got }].
 */
async function openSources(origin, hub, { settle }) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  try {
    const page = await context.newPage();
    // A page of the hub's own (not the viewer, which opens a stream of its own).
    const response = await page.goto(`${origin}/healthz`);
    assert.equal(response.status(), 200);
    await page.evaluate((n) => {
      window.sources = [];
      for (let i = 0; i < n; i++) {
        const source = new EventSource(`/events?topic=tls&n=${i}`);
        source.got = 0;
        source.onmessage = () => { source.got += 1; };
        window.sources.push(source);
      }
    }, SOURCES);
    const report = () => page.evaluate(() => window.sources.map((s) => ({ state: s.readyState, got: s.got })));
    const open = async () => (await report()).filter((s) => s.state === 1).length;
    await waitFor(async () => (await open()) >= settle, { message: `${settle} sources open` });
    await waitFor(async () => (await clients(hub.publishUrl)) >= settle, { message: 'the hub sees them' });
    await publish(hub.publishUrl, { topic: 'tls', data: 'to every tab' });
    await waitFor(async () => (await report()).filter((s) => s.got === 1).length >= settle, {
      message: `${settle} sources got the event`,
    });
    // Give the others a chance they should not get.
    await new Promise((resolve) => setTimeout(resolve, 500));
    const protocol = await page.evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol);
    return { sources: await report(), protocol };
  } finally {
    await context.close();
  }
}

test('over https (HTTP/2) all 20 EventSources of a page get events', async () => {
  const hub = await startHub(['--tls-cert', join(dir, 'cert.pem'), '--tls-key', join(dir, 'key.pem')]);
  try {
    assert.match(hub.url, /^https:/);
    const origin = `https://localhost:${hub.port}`;
    const { sources, protocol } = await openSources(origin, hub, { settle: SOURCES });
    assert.equal(protocol, 'h2');
    assert.equal(sources.filter((s) => s.state === 1).length, SOURCES);
    assert.equal(sources.filter((s) => s.got === 1).length, SOURCES);
    await waitFor(async () => (await clients(hub.publishUrl)) === 0, { message: 'closing the page closed every stream' });
  } finally {
    await hub.stop();
  }
});

test('over plain HTTP/1.1 only 6 of them open; the rest stay CONNECTING', async () => {
  const hub = await startHub([]);
  try {
    const { sources, protocol } = await openSources(hub.url, hub, { settle: 6 });
    assert.equal(protocol, 'http/1.1');
    const open = sources.filter((s) => s.state === 1);
    const connecting = sources.filter((s) => s.state === 0);
    assert.equal(open.length, 6, JSON.stringify(sources));
    assert.equal(connecting.length, SOURCES - 6);
    assert.equal(sources.filter((s) => s.got === 1).length, 6);
    assert.ok(connecting.every((s) => s.got === 0));
  } finally {
    await hub.stop();
  }
});
