// The viewer's events/s chart in a real headless Chromium against the real hub: it draws a line
// per topic from the events that arrive, and the test saves docs/viewer-chart.png.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, publishBatch, repoRoot, startHub, waitFor } from './harness.mjs';

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

// Pixels of the canvas drawn in each series colour (the first two: one per topic).
const SERIES = { news: [0x00, 0x72, 0xb2], device: [0xd5, 0x5e, 0x00] };

async function seriesPixels(page) {
  return page.locator('#rate-chart').evaluate((canvas, series) => {
    const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
    const counts = Object.fromEntries(Object.keys(series).map((k) => [k, 0]));
    for (let i = 0; i < data.length; i += 4) {
      for (const [name, [r, g, b]] of Object.entries(series)) {
        if (Math.abs(data[i] - r) < 24 && Math.abs(data[i + 1] - g) < 24 && Math.abs(data[i + 2] - b) < 24 && data[i + 3] > 200) {
          counts[name] += 1;
        }
      }
    }
    return counts;
  }, SERIES);
}

test('the events/s chart draws one line per topic from the events that arrive', async () => {
  const hub = await startHub([]);
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors = [];
    page.on('pageerror', (err) => errors.push(err.message));
    await page.goto(`${hub.url}/?topic=news&topic=device`);
    await waitFor(async () => (await page.locator('#state').getAttribute('data-state')) === 'live');
    assert.match(await page.locator('#chart-legend').textContent(), /One line per topic:\s*news\s*device/);
    const blank = await seriesPixels(page);
    assert.deepEqual(blank, { news: 0, device: 0 }, 'no lines before any event');
    const before = await page.locator('#rate-chart').evaluate((c) => c.toDataURL());

    // About 3 s of events: 200/s on news, 50/s on device, in batches every 250 ms.
    for (let i = 0; i < 12; i++) {
      await publishBatch(hub.publishUrl, [
        ...Array.from({ length: 50 }, (_, k) => ({ topic: 'news', data: `n${i}-${k}` })),
        ...Array.from({ length: 12 }, (_, k) => ({ topic: 'device', data: `d${i}-${k}` })),
      ]);
      await new Promise((r) => setTimeout(r, 250));
    }
    // The chart's label carries the last second's figures: both topics counted.
    await waitFor(
      async () => {
        const label = await page.locator('#rate-chart').getAttribute('aria-label');
        return /news [1-9]\d*/.test(label) && /device [1-9]\d*/.test(label);
      },
      { message: 'the chart counts both topics' },
    );
    await waitFor(
      async () => {
        const px = await seriesPixels(page);
        return px.news > 50 && px.device > 50;
      },
      { timeout: 5000, message: 'a line in each topic colour' },
    );
    assert.notEqual(await page.locator('#rate-chart').evaluate((c) => c.toDataURL()), before);
    await page.screenshot({ path: `${repoRoot}docs/viewer-chart.png`, clip: { x: 0, y: 0, width: 1280, height: 520 } });
    assert.deepEqual(errors, []);
    await page.close();
  } finally {
    await hub.stop();
  }
});
