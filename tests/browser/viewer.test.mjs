// The viewer page (GET /) in a real headless Chromium against the real hub.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import net from 'node:net';
import { launchBrowser, publish, publishBatch, repoRoot, startHub, waitFor } from './harness.mjs';

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

async function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

const state = (page) => page.locator('#state').getAttribute('data-state');
const count = async (page) => Number(await page.locator('#count').textContent());
const rows = (page) => page.locator('#events tr').count();

async function openViewer(hubUrl, query = '') {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const errors = [];
  page.on('pageerror', (err) => errors.push(err.message));
  const response = await page.goto(`${hubUrl}/${query}`);
  assert.equal(response.status(), 200);
  assert.match(response.headers()['content-type'], /^text\/html/);
  await waitFor(async () => (await state(page)) === 'live', { message: 'the page goes live' });
  return { page, errors };
}

test('shows events, named events, the status panel and a gap marker', async () => {
  // A fixed port, so that the hub can be restarted under the page (a new history: a gap).
  const port = await freePort();
  const args = ['--listen', `127.0.0.1:${port}`, '--retry', '300'];
  let hub = await startHub(args);
  try {
    const { page, errors } = await openViewer(hub.url, '?topic=news&topic=device&event=custom');
    assert.equal(await page.locator('#topics').textContent(), 'news, device');

    // Each topic is its own stream, so events on different topics may arrive in either order:
    // publish the next one only once the last is shown.
    const sent = [
      { topic: 'news', data: 'hello, world' },
      { topic: 'device', event: 'status', data: JSON.stringify({ cpu: 0.5, up: true }) },
      { topic: 'news', event: 'custom', data: 'line one\nline two' },
      { topic: ['news', 'device'], data: 'on both topics' },
    ];
    const ids = [];
    for (const [i, event] of sent.entries()) {
      ids.push((await publish(hub.publishUrl, event)).id);
      await waitFor(async () => (await rows(page)) === i + 1, { message: `row ${i + 1}` });
    }
    // The two-topic event is one row; give its second copy time to arrive and be merged.
    await waitFor(async () => (await page.locator('#events tr').last().locator('td.topic').textContent()).includes(','));
    assert.equal(await rows(page), 4);
    const first = { id: ids[0] };
    const cells = await page.locator('#events tr').evaluateAll((trs) =>
      trs.map((tr) => Array.from(tr.cells).map((td) => td.textContent)),
    );
    assert.deepEqual(cells[0].slice(1), ['news', 'message', first.id, 'hello, world']);
    assert.deepEqual(cells[1].slice(1, 3), ['device', 'status']);
    assert.deepEqual(cells[2].slice(1, 3).concat(cells[2][4]), ['news', 'custom', 'line one\nline two']);
    assert.deepEqual(cells[3][4], 'on both topics');
    assert.deepEqual(cells[3][1].split(', ').sort(), ['device', 'news']);
    assert.equal(await count(page), 4);

    // The status panel shows the latest status event, as pretty JSON.
    assert.equal(await page.locator('#status-data').textContent(), JSON.stringify({ cpu: 0.5, up: true }, null, 2));

    // The publish help carries this hub's publish listener (no token needed there).
    const publishPort = new URL(hub.publishUrl).port;
    assert.notEqual(publishPort, String(port));
    assert.equal(
      await page.locator('#curl-raw').textContent(),
      `curl -X POST 'http://127.0.0.1:${publishPort}/publish?topic=news' --data-binary 'hello'`,
    );

    mkdirSync(`${repoRoot}target`, { recursive: true });
    await page.screenshot({ path: `${repoRoot}target/viewer.png` });

    // Restart the hub: the page comes back with its Last-Event-ID from the old history and the
    // hub answers with a gap, which the page shows as a marker (not silently).
    await hub.stop();
    hub = await startHub(args);
    await waitFor(async () => (await page.locator('#events tr.gap').count()) >= 1, {
      timeout: 15000,
      message: 'a gap marker',
    });
    assert.match(await page.locator('#events tr.gap').first().textContent(), /gap \(other-history\)/);
    await waitFor(async () => (await state(page)) === 'live');
    await publish(hub.publishUrl, { topic: 'news', data: 'after the restart' });
    await waitFor(async () => (await page.locator('#events').textContent()).includes('after the restart'));
    assert.deepEqual(errors, []);
  } finally {
    await hub.stop();
  }
});

test('on open the page shows the newest events first (?tail=N, 100 by default), then live ones', async () => {
  const hub = await startHub();
  try {
    await publishBatch(hub.publishUrl, Array.from({ length: 5 }, (_, i) => ({ topic: 'log', data: `line ${i + 1}` })));
    const { page, errors } = await openViewer(hub.url, '?topic=log&tail=3');
    await waitFor(async () => (await count(page)) === 3, { message: 'the newest 3 arrive' });
    const text = await page.locator('#events').textContent();
    assert.ok(!text.includes('line 2') && text.includes('line 3') && text.includes('line 5'), text);
    assert.equal(await page.locator('#open-tail').inputValue(), '3');
    await publish(hub.publishUrl, { topic: 'log', data: 'line 6' });
    await waitFor(async () => (await count(page)) === 4, { message: 'then live ones' });
    // By default, the newest 100.
    const defaults = await openViewer(hub.url, '?topic=log');
    await waitFor(async () => (await count(defaults.page)) === 6, { message: 'all six' });
    assert.deepEqual([...errors, ...defaults.errors], []);
  } finally {
    await hub.stop();
  }
});

test('a full hub: the second page says busy, then connects by itself', async () => {
  const hub = await startHub(['--max-clients', '1', '--retry', '1000']);
  try {
    const first = await openViewer(hub.url);
    const second = await browser.newPage();
    await second.goto(`${hub.url}/`);
    await waitFor(async () => (await state(second)) === 'busy', { message: 'the second page says busy' });
    assert.match(await second.locator('#state').textContent(), /hub busy/);
    await first.page.close();
    await waitFor(async () => (await state(second)) === 'live', {
      timeout: 15000,
      message: 'the second page connects once the first has closed',
    });
    await publish(hub.publishUrl, { data: 'now you see me' });
    await waitFor(async () => (await second.locator('#events').textContent()).includes('now you see me'));
  } finally {
    await hub.stop();
  }
});

test('1000 events in one second all reach the counter, and the page stays usable', async () => {
  const hub = await startHub([]);
  try {
    const { page, errors } = await openViewer(hub.url, '?topic=burst');
    // Ten batches of 100, one every 100 ms.
    for (let b = 0; b < 10; b++) {
      const batch = Array.from({ length: 100 }, (_, i) => ({ topic: 'burst', data: `event ${b * 100 + i}` }));
      await publishBatch(hub.publishUrl, batch);
      await new Promise((r) => setTimeout(r, 100));
    }
    await waitFor(async () => (await count(page)) === 1000, { message: 'the counter reaches 1000' });
    await waitFor(async () => (await rows(page)) === 1000, { message: 'all 1000 rows are shown' });
    // Still usable: the controls answer, and the newest row is in view (auto-scroll).
    await page.locator('#pause').click();
    assert.equal(await page.locator('#pause').getAttribute('aria-pressed'), 'true');
    const lastVisible = await page.locator('#events tr').last().isVisible();
    assert.ok(lastVisible);
    const bottom = await page.locator('#scroller').evaluate((el) => el.scrollTop + el.clientHeight >= el.scrollHeight - 8);
    assert.ok(bottom, 'following the newest events');

    // Paused: counting goes on, the list waits; resumed, it catches up.
    await publish(hub.publishUrl, { topic: 'burst', data: 'while paused' });
    await waitFor(async () => (await count(page)) === 1001);
    assert.equal(await rows(page), 1000);
    await page.locator('#pause').click();
    await waitFor(async () => (await rows(page)) === 1001);

    // The filter hides what does not match; clear empties the list.
    await page.locator('#filter').fill('event 99');
    const shown = await page.locator('#events tr:not([hidden])').count();
    assert.equal(shown, 11); // "event 99" and "event 990".."event 999"
    await page.locator('#filter').fill('');
    await page.locator('#clear').click();
    assert.equal(await rows(page), 0);
    assert.deepEqual(errors, []);
  } finally {
    await hub.stop();
  }
});

test('the list keeps at most 5000 rows', async () => {
  const hub = await startHub([]);
  try {
    const { page } = await openViewer(hub.url, '?topic=many');
    for (let b = 0; b < 6; b++) {
      const batch = Array.from({ length: 1000 }, (_, i) => ({ topic: 'many', data: `n${b * 1000 + i}` }));
      await publishBatch(hub.publishUrl, batch);
    }
    await waitFor(async () => (await count(page)) === 6000, { message: 'the counter reaches 6000' });
    await waitFor(async () => (await page.locator('#events tr').last().textContent()).includes('n5999'));
    assert.equal(await rows(page), 5000);
    assert.match(await page.locator('#events tr').first().textContent(), /n1000/);
  } finally {
    await hub.stop();
  }
});

test('scrolling up stops following; the page works with the keyboard', async () => {
  const hub = await startHub([]);
  try {
    const { page } = await openViewer(hub.url, '?topic=k');
    await publishBatch(hub.publishUrl, Array.from({ length: 300 }, (_, i) => ({ topic: 'k', data: `k${i}` })));
    await waitFor(async () => (await rows(page)) === 300);
    await page.locator('#scroller').evaluate((el) => {
      el.scrollTop = 0;
      el.dispatchEvent(new Event('scroll'));
    });
    await publishBatch(hub.publishUrl, Array.from({ length: 50 }, (_, i) => ({ topic: 'k', data: `more${i}` })));
    await waitFor(async () => (await rows(page)) === 350);
    assert.equal(await page.locator('#scroller').evaluate((el) => el.scrollTop), 0, 'stays where the user scrolled');
    assert.match(await page.locator('#following').textContent(), /not following/);
    // Keyboard: the filter has a label, and Tab reaches the buttons.
    assert.equal(await page.getByLabel('Filter').count(), 1);
    await page.locator('#filter').focus();
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'pause');
    await page.keyboard.press('Enter');
    assert.equal(await page.locator('#pause').getAttribute('aria-pressed'), 'true');
  } finally {
    await hub.stop();
  }
});

test("the page's own stream comes on a reused connection and takes the stream path", async () => {
  const hub = await startHub([]);
  try {
    const page = await browser.newPage();
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Network.enable');
    const responses = [];
    cdp.on('Network.responseReceived', (e) => responses.push(e));
    await page.goto(`${hub.url}/?topic=ka`);
    await waitFor(async () => (await state(page)) === 'live', { message: 'the page goes live' });
    const stream = responses.find((r) => r.type === 'EventSource');
    assert.ok(stream, `no EventSource response among ${responses.map((r) => r.response.url)}`);
    // Chromium opened its EventSource on a connection that had served the page or its assets.
    const earlier = responses.filter((r) => r !== stream).map((r) => r.response.connectionId);
    assert.equal(stream.response.connectionReused, true);
    assert.ok(earlier.includes(stream.response.connectionId), 'the same connection as the page');
    // The hub's stream writer, not hyper, answered it: exactly the head a fresh connection gets.
    const names = Object.keys(stream.response.headers).map((h) => h.toLowerCase()).sort();
    const fresh = await fetch(`${hub.url}/events?topic=other`);
    const freshNames = [...fresh.headers.keys()].sort();
    await fresh.body.cancel();
    assert.deepEqual(names, freshNames);
    assert.ok(!names.includes('date'), `${names}`);
    // And it works: an event published now shows on the page.
    await publish(hub.publishUrl, { topic: 'ka', data: 'on a kept connection' });
    await waitFor(async () => (await page.locator('#events').textContent()).includes('on a kept connection'));
    await page.close();
  } finally {
    await hub.stop();
  }
});
