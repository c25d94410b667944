// The device's own page (examples/device/index.html), unchanged, on the hub's origin in a real
// headless Chromium: its `new EventSource('event')` reaches the hub's GET /event.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { launchBrowser, publish, repoRoot, startHub, waitFor } from './harness.mjs';

const html = readFileSync(`${repoRoot}examples/device/index.html`, 'utf8');

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

const state = (page) => page.locator('#state').textContent();
const lines = (page) => page.locator('#log .line').allTextContents();

// The hub serves only its own page, so the device's is put on a page of the hub's origin: the
// document keeps its URL (/healthz), so the relative 'event' resolves to the hub's /event.
// Returns the page, its errors, and the statuses its requests to /event got.
async function openDevicePage(hubUrl) {
  const page = await browser.newPage();
  const errors = [];
  const streams = [];
  page.on('pageerror', (err) => errors.push(err.message));
  page.on('response', (response) => {
    if (response.url() === `${hubUrl}/event`) streams.push(response.status());
  });
  await page.goto(`${hubUrl}/healthz`);
  await page.setContent(html);
  return { page, errors, streams };
}

test('the device page, moved onto the hub, shows log lines and status', async () => {
  const hub = await startHub(['--event-topic', 'log']);
  try {
    const { page, errors, streams } = await openDevicePage(hub.url);
    await waitFor(async () => (await state(page)) === 'open', { message: 'onopen fires' });
    assert.deepEqual(streams, [200]);
    await publish(hub.publishUrl, { topic: 'log', data: 'I (100) app: first line' });
    await publish(hub.publishUrl, { topic: 'elsewhere', data: 'not for this page' });
    await publish(hub.publishUrl, { topic: 'log', data: 'I (300) app: second line' });
    await waitFor(async () => (await lines(page)).length === 2, { message: 'two log lines' });
    assert.deepEqual(await lines(page), ['I (100) app: first line', 'I (300) app: second line']);

    const status = { uptime_ms: 1234, clients: 1, heap: 40960 };
    await publish(hub.publishUrl, { topic: 'log', event: 'status', data: status });
    const shown = JSON.stringify(status, null, 2);
    await waitFor(async () => (await page.locator('#status').textContent()) === shown, {
      message: 'the status event, parsed and shown',
    });
    assert.equal((await lines(page)).length, 2, 'a status event is not a log line');
    assert.deepEqual(errors, []);
  } finally {
    await hub.stop();
  }
});

test('a full hub: the page sees CLOSED after the 503, as on the device', async () => {
  const hub = await startHub(['--max-clients', '1']);
  const holder = new AbortController();
  try {
    // Another client holds the only slot.
    const held = await fetch(`${hub.url}/event`, {
      headers: { accept: 'text/event-stream' },
      signal: holder.signal,
    });
    assert.equal(held.status, 200);
    const reader = held.body.getReader();
    await reader.read(); // the stream's opening: the slot is surely taken

    const { page, errors, streams } = await openDevicePage(hub.url);
    await waitFor(async () => (await state(page)) === 'closed', { message: 'onerror shows closed' });
    assert.equal(await page.evaluate(() => source.readyState), 2); // EventSource.CLOSED
    assert.deepEqual(streams, [503]);
    assert.deepEqual(errors, []);
  } finally {
    holder.abort();
    await hub.stop();
  }
});
