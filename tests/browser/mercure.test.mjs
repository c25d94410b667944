// The Mercure front in a real browser: a page on the hub's origin subscribes to
// /.well-known/mercure with exact topics, an alternate topic, several selectors, full URIs and URI
// templates, while a publisher posts form fields with an HS256 token. Private updates reach only
// the page holding a subscriber token in the mercureAuthorization cookie.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { launchBrowser, startHub, waitFor } from './harness.mjs';

const SECRET = 'a-shared-secret-for-the-mercure-test';

/** An HS256 JWT with these claims, signed with SECRET. */
function jwt(claims) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const unsigned = `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}`;
  const signature = createHmac('sha256', SECRET).update(unsigned).digest('base64url');
  return `${unsigned}.${signature}`;
}

const publisherToken = jwt({ mercure: { publish: ['*'] } });
const subscriberToken = jwt({ mercure: { subscribe: ['https://example.com/books/{id}'] } });

/** POSTs form fields (an array of [name, value], names may repeat); resolves to { status, type, body }. */
async function publishForm(hubUrl, fields, token = publisherToken) {
  const body = new URLSearchParams(fields);
  const response = await fetch(new URL('/.well-known/mercure', hubUrl), {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Bearer ${token}`,
    },
    body,
  });
  return {
    status: response.status,
    type: response.headers.get('content-type'),
    body: await response.text(),
  };
}

// In the page: one EventSource per named subscription, each recording what it receives (and the
// `update` named events as well as unnamed ones).
async function listen(page, subscriptions) {
  await page.evaluate((subs) => {
    window.got = {};
    window.opened = 0;
    for (const [name, query] of Object.entries(subs)) {
      window.got[name] = [];
      const es = new EventSource(`/.well-known/mercure?${query}`);
      const record = (e) => window.got[name].push({ id: e.lastEventId, data: e.data, type: e.type });
      es.onmessage = record;
      es.addEventListener('update', record);
      es.onopen = () => { window.opened += 1; };
    }
  }, subscriptions);
  const count = Object.keys(subscriptions).length;
  await waitFor(() => page.evaluate((n) => window.opened === n, count), {
    message: 'every EventSource opened',
  });
}

const got = (page) => page.evaluate(() => window.got);

let browser;
let hub;
before(async () => {
  browser = await launchBrowser();
  hub = await startHub(['--jwt-key', SECRET]);
});
after(async () => {
  await hub?.stop();
  await browser?.close();
});

test('a page sees form-published updates through exact topics, alternates, several selectors and templates', async () => {
  const page = await browser.newPage();
  // A page of the hub's origin that opens no stream of its own (the viewer would).
  await page.goto(`${hub.url}/healthz`);
  const q = (...topics) => topics.map((t) => `topic=${encodeURIComponent(t)}`).join('&');
  await listen(page, {
    exact: q('https://example.com/books/1'),
    alternate: q('https://example.com/alternates/1'),
    several: q('https://example.com/nothing', 'https://example.com/books/1'),
    template: q('https://example.com/books/{id}'),
    all: q('*'),
    // Chromium opens at most 6 HTTP/1.1 connections per origin: this is the sixth stream.
    none: q('https://example.com/authors/{id}', 'https://example.com/books/2'),
  });
  // Multi-line data with an empty line inside, as the protocol's interop check asks.
  const data = 'first line\n\nthird line, after an empty one\n{"json": true}';
  const first = await publishForm(hub.url, [
    ['topic', 'https://example.com/books/1'],
    ['topic', 'https://example.com/alternates/1'],
    ['data', data],
    ['id', 'urn:uuid:5e6b8d4c-0000-4000-8000-000000000001'],
  ]);
  assert.equal(first.status, 200, first.body);
  assert.match(first.type, /^text\/plain/);
  assert.equal(first.body, 'urn:uuid:5e6b8d4c-0000-4000-8000-000000000001');
  const second = await publishForm(hub.url, [
    ['topic', 'https://example.com/books/1'],
    ['data', 'named'],
    ['id', 'book-1-v2'],
    ['type', 'update'],
  ]);
  assert.equal(second.status, 200, second.body);

  const expectFirst = { id: first.body, data, type: 'message' };
  const expectSecond = { id: 'book-1-v2', data: 'named', type: 'update' };
  const seen = await waitFor(async () => {
    const g = await got(page);
    return g.all.length === 2 && g.template.length === 2 ? g : null;
  }, { message: 'both updates reached the page' });
  assert.deepEqual(seen.exact, [expectFirst, expectSecond]);
  assert.deepEqual(seen.alternate, [expectFirst]);
  assert.deepEqual(seen.several, [expectFirst, expectSecond]);
  assert.deepEqual(seen.template, [expectFirst, expectSecond]);
  assert.deepEqual(seen.all, [expectFirst, expectSecond]);
  assert.deepEqual(seen.none, []);
  await page.close();
});

test('private updates never reach an anonymous page, and do reach one holding a cookie token', async () => {
  const anonymous = await browser.newPage();
  const context = await browser.newContext();
  await context.addCookies([{ name: 'mercureAuthorization', value: subscriberToken, url: hub.url }]);
  const holder = await context.newPage();
  for (const page of [anonymous, holder]) {
    await page.goto(`${hub.url}/healthz`);
    await listen(page, { book: `topic=${encodeURIComponent('https://example.com/books/{id}')}` });
  }
  const secret = await publishForm(hub.url, [
    ['topic', 'https://example.com/books/7'],
    ['data', 'for subscribers allowed books only'],
    ['private', 'on'],
  ]);
  assert.equal(secret.status, 200, secret.body);
  const marker = await publishForm(hub.url, [
    ['topic', 'https://example.com/books/7'],
    ['data', 'public marker'],
  ]);
  assert.equal(marker.status, 200, marker.body);
  const heldSeen = await waitFor(async () => {
    const g = await got(holder);
    return g.book.length === 2 ? g.book : null;
  }, { message: 'the token holder got both updates' });
  assert.deepEqual(heldSeen.map((e) => e.data), ['for subscribers allowed books only', 'public marker']);
  const anonymousSeen = await waitFor(async () => {
    const g = await got(anonymous);
    return g.book.length >= 1 ? g.book : null;
  }, { message: 'the anonymous page got the public marker' });
  // The marker came after the private update: had the private one been sent, it would be here.
  assert.deepEqual(anonymousSeen.map((e) => e.data), ['public marker']);
  await anonymous.close();
  await context.close();
});

test('a form publish without a token or with a wrong key is refused with a reason', async () => {
  const anonymous = await fetch(new URL('/.well-known/mercure', hub.url), {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: 'topic=a&data=x',
  });
  assert.equal(anonymous.status, 401);
  const forged = await publishForm(
    hub.url,
    [['topic', 'a'], ['data', 'x']],
    `${publisherToken.slice(0, -4)}AAAA`,
  );
  assert.equal(forged.status, 401);
  assert.match(forged.body, /signature/);
});
