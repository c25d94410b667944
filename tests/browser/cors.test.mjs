// --cors-origin in a real browser: a page on another origin listens and publishes when its
// origin is listed, and is blocked when it is not.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { launchBrowser, startHub, waitFor } from './harness.mjs';

let browser;
let site; // a page on another origin (another port)
let siteOrigin;
before(async () => {
  browser = await launchBrowser();
  site = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<!doctype html><title>app</title><p id="log"></p>');
  });
  await new Promise((resolve) => site.listen(0, '127.0.0.1', resolve));
  siteOrigin = `http://127.0.0.1:${site.address().port}`;
});
after(async () => {
  await browser?.close();
  site?.close();
});

// In the page: listen to the hub, publish to it with fetch (JSON: a preflight), report back.
async function tryHub(page, hubUrl) {
  return page.evaluate(async (hub) => {
    const received = new Promise((resolve) => {
      const es = new EventSource(`${hub}/events?topic=x`);
      es.onmessage = (e) => { es.close(); resolve(e.data); };
      es.onerror = () => { if (es.readyState === EventSource.CLOSED) resolve('blocked'); };
      setTimeout(() => resolve('nothing'), 5000);
    });
    await new Promise((r) => setTimeout(r, 300)); // let the stream open
    let published;
    try {
      const answer = await fetch(`${hub}/publish`, {
        method: 'POST',
        // Publishing on the hub's public listener takes its token (a preflighted header).
        headers: { 'content-type': 'application/json', authorization: 'Bearer t0ken' },
        body: JSON.stringify({ topic: 'x', data: 'cross-origin hello' }),
      });
      published = answer.status;
    } catch (_) {
      published = 'blocked';
    }
    return { published, received: await received };
  }, hubUrl);
}

test('a listed origin may listen and publish', async () => {
  const hub = await startHub(['--cors-origin', siteOrigin, '--publish-token', 't0ken']);
  try {
    const page = await browser.newPage();
    await page.goto(siteOrigin);
    const result = await tryHub(page, hub.url);
    assert.deepEqual(result, { published: 200, received: 'cross-origin hello' });
  } finally {
    await hub.stop();
  }
});

test('an unlisted origin is blocked by the browser', async () => {
  const hub = await startHub(['--cors-origin', 'http://somewhere-else.test', '--publish-token', 't0ken']);
  try {
    const page = await browser.newPage();
    await page.goto(siteOrigin);
    const result = await tryHub(page, hub.url);
    assert.deepEqual(result, { published: 'blocked', received: 'blocked' });
    await waitFor(async () => (await (await fetch(`${hub.url}/metrics`)).text()).includes('ssehub_published_total 0'));
  } finally {
    await hub.stop();
  }
});
