// The viewer page shows the upstream relay's state (`--upstream`): its `upstream` events, in a
// real headless Chromium against two real hubs (one relaying the other).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, publish, startHub, waitFor } from './harness.mjs';

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

test('the viewer shows an upstream connected, its events, and the upstream down', async () => {
  const source = await startHub();
  const relay = await startHub(['--upstream', `dev=${source.url}/events?topic=dev`]);
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on('pageerror', (err) => errors.push(err.message));
    await page.goto(`${relay.url}/?topic=dev`);
    const line = page.locator('#upstream-line');
    const text = () => page.locator('#upstream').textContent();
    await waitFor(async () => (await line.isVisible()) && (await text()).includes('connected'), {
      message: 'the upstream shows as connected',
    });
    assert.match(await text(), /^dev: http:\/\/127\.0\.0\.1:\d+\/events\?topic=dev connected/);
    await publish(source.publishUrl, { topic: 'dev', data: 'from the device' });
    await waitFor(async () => (await page.locator('#events').textContent()).includes('from the device'), {
      message: 'the relayed event is shown',
    });
    await source.stop();
    await waitFor(async () => (await text()).includes(' down'), { message: 'the upstream shows as down' });
    assert.match(await text(), /1 events relayed/);
    assert.deepEqual(errors, []);
  } finally {
    await relay.stop();
    await source.stop();
  }
});
