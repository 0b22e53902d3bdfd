// shareAcrossTabs: the pages of one browser share one connection per URL
// and user; the holder's page may close or freeze, and another takes over
// without losing or repeating an event.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { eventually } from './support/eventually.js';
import { startHarness } from './support/harness.js';
import { uniqueId, uniqueTopic } from './support/topics.js';

let harness;
before(async () => {
  harness = await startHarness();
});
after(() => harness?.close());

const pagesOf = new WeakMap();

/**
 * A page of the test app. The pages of a test close together, before the
 * harness counts connections: one page's connection is the others' too.
 */
async function open(t, options) {
  if (!pagesOf.has(t)) {
    const pages = [];
    pagesOf.set(t, pages);
    t.after(() => Promise.all(pages.map((app) => app.page.close())));
  }
  const app = await harness.open(t, options);
  pagesOf.get(t).push(app);
  return app;
}

/** A page with a shared client of `user` subscribed to `topics`; what it receives goes to `window.got`. */
async function sharedPage(t, user, topics) {
  const app = await open(t);
  await app.evaluate(
    ({ url, user, topics }) => {
      window.got = {};
      window.others = [];
      window.client = new window.HeraldClient({ url, token: user, shareAcrossTabs: true });
      window.client.onStatus((status) => {
        window.state = status;
      });
      window.stops = {};
      window.subscribe = (topic) => {
        window.got[topic] = [];
        window.stops[topic] = window.client.subscribe(topic, (message) => {
          if (message.type === undefined) window.got[topic].push(message.seq);
          else window.others.push(`${message.type} ${topic}${message.reason ? ` ${message.reason}` : ''}`);
        });
        return window.stops[topic].live;
      };
      return Promise.all(topics.map(window.subscribe));
    },
    { url: harness.testbed.addresses.ws, user, topics },
  );
  return app;
}

const got = (app) => app.evaluate(() => window.got);
const role = (app) => app.evaluate(() => window.state?.shared);
const connected = (app) => app.evaluate(() => window.state?.state === 'connected');

/** Seqs that run without a gap or a repeat. */
function assertRun(seqs, what) {
  for (let i = 1; i < seqs.length; i++) assert.equal(seqs[i], seqs[i - 1] + 1, `${what}: no gap, no duplicate in ${JSON.stringify(seqs)}`);
}

test('three pages share one connection, and each gets exactly the events of its topics', async (t) => {
  const { testbed } = harness;
  const start = await testbed.state();
  const user = `sharer-${uniqueId()}`;
  const [a, b, c] = [uniqueTopic('doc'), uniqueTopic('doc'), uniqueTopic('doc')];
  const pages = [await sharedPage(t, user, [a, b]), await sharedPage(t, user, [b, c]), await sharedPage(t, user, [c])];
  for (const page of pages) await eventually('every page connected', () => connected(page));
  await testbed.waitForState('one connection, three topics', (state) => state.subscriptions === start.subscriptions + 3);
  assert.equal((await testbed.state()).connections, start.connections + 1, 'one WebSocket connection for the three pages');
  const roles = await Promise.all(pages.map(role));
  assert.deepEqual(roles.sort(), ['follower', 'follower', 'holder']);

  // A new topic numbers on from where pruned ones were: seqs are the server's answers.
  const seq = {};
  for (const topic of [a, b, c, a]) (seq[topic] ??= []).push(await testbed.publish(topic));
  const want = [{ [a]: seq[a], [b]: seq[b] }, { [b]: seq[b], [c]: seq[c] }, { [c]: seq[c] }];
  for (const [i, page] of pages.entries()) {
    await eventually(`page ${i} got its events`, () => got(page), (seen) => JSON.stringify(seen) === JSON.stringify(want[i]));
  }
  // Nothing more arrives later either.
  await new Promise((resolve) => setTimeout(resolve, 300));
  for (const [i, page] of pages.entries()) assert.deepEqual(await got(page), want[i]);
});

test('the holder page closes while events are published; another takes over within 2 s and no page misses or repeats one', async (t) => {
  const { testbed } = harness;
  const start = await testbed.state();
  const user = `handover-${uniqueId()}`;
  const topic = uniqueTopic('doc');
  const pages = [await sharedPage(t, user, [topic]), await sharedPage(t, user, [topic]), await sharedPage(t, user, [topic])];
  for (const page of pages) await eventually('every page connected', () => connected(page));
  const roles = await Promise.all(pages.map(role));
  const holder = pages[roles.indexOf('holder')];
  const followers = pages.filter((page) => page !== holder);

  const TOTAL = 40;
  let published = 0;
  const seqs = [];
  const publishing = (async () => {
    while (published < TOTAL) {
      seqs.push(await testbed.publish(topic));
      published += 1;
      await new Promise((resolve) => setTimeout(resolve, 40));
    }
  })();
  await eventually('some events before the close', async () => published >= 10);
  const closed = Date.now();
  await holder.page.close();
  const newHolder = await eventually('a new holder', async () => (await Promise.all(followers.map(role))).indexOf('holder'), (at) => at >= 0);
  const took = Date.now() - closed;
  assert.ok(took < 2000, `took over in ${took} ms`);
  await publishing;

  for (const [i, page] of followers.entries()) {
    const seen = await eventually(`page ${i} got every event`, () => got(page), (seen) => seen[topic].at(-1) === seqs.at(-1));
    assert.equal(seen[topic][0], seqs[0], 'from the first');
    assertRun(seen[topic], `page ${i}`);
    const others = await page.evaluate(() => window.others);
    assert.ok(!others.some((other) => other.startsWith('resync')), `no resync: ${others}`);
  }
  await testbed.waitForState('one connection again', (state) => state.connections === start.connections + 1);
  assert.equal(await role(followers[newHolder]), 'holder');
});

test('a page that unsubscribes stops receiving, and the last page to leave a topic unsubscribes the socket', async (t) => {
  const { testbed } = harness;
  const start = await testbed.state();
  const user = `leaver-${uniqueId()}`;
  const topic = uniqueTopic('doc');
  const [first, second] = [await sharedPage(t, user, [topic]), await sharedPage(t, user, [topic])];
  await testbed.waitForState('one subscription', (state) => state.subscriptions === start.subscriptions + 1);

  await first.evaluate((topic) => window.stops[topic](), topic);
  await testbed.publish(topic);
  await eventually('the second page got it', () => got(second), (seen) => seen[topic].length === 1);
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.deepEqual((await got(first))[topic], [], 'the page that left got nothing');
  assert.equal((await testbed.state()).subscriptions, start.subscriptions + 1, 'still subscribed for the second page');

  await second.evaluate((topic) => window.stops[topic](), topic);
  await testbed.waitForState('unsubscribed, the connection kept', (state) =>
    state.subscriptions === start.subscriptions && state.connections === start.connections + 1,
  );
});

test("a page that vanishes without a word (a crash) no longer keeps its topics subscribed", async (t) => {
  const { testbed } = harness;
  const start = await testbed.state();
  const user = `crasher-${uniqueId()}`;
  const [kept, dropped] = [uniqueTopic('doc'), uniqueTopic('doc')];
  const stays = await sharedPage(t, user, [kept]);
  await eventually('the first page holds the connection', () => role(stays), (shared) => shared === 'holder');
  // The second page's 'bye' is swallowed, as a crashed tab would send none.
  const app = await open(t, { beforeLoad: (page) => page.addInitScript(() => addEventListener('pagehide', (event) => event.stopImmediatePropagation())) });
  await app.evaluate(
    ({ url, user, topic }) => {
      window.client = new window.HeraldClient({ url, token: user, shareAcrossTabs: true });
      return window.client.subscribe(topic, () => {}).live;
    },
    { url: testbed.addresses.ws, user, topic: dropped },
  );
  await testbed.waitForState('both topics subscribed', (state) => state.subscriptions === start.subscriptions + 2);
  await new Promise((resolve) => setTimeout(resolve, 1000)); // seen alive by the holder's sweep
  await app.page.close();
  await testbed.waitForState("the vanished page's topic unsubscribed", (state) => state.subscriptions === start.subscriptions + 1);
});

test('another user never shares: a page that switches user gets its own connection and only its own events', async (t) => {
  const { testbed } = harness;
  const start = await testbed.state();
  const [mine, theirs] = [uniqueTopic('doc'), uniqueTopic('doc')];
  const alice = `alice-${uniqueId()}`;
  const [first, second] = [await sharedPage(t, alice, [mine]), await sharedPage(t, alice, [mine])];
  for (const page of [first, second]) await eventually('connected', () => connected(page));
  assert.equal((await testbed.state()).connections, start.connections + 1, 'one connection for one user');

  await second.evaluate(
    ({ url, user, topic }) => {
      window.client.close();
      window.client = new window.HeraldClient({ url, token: user, shareAcrossTabs: true });
      window.client.onStatus((status) => {
        window.state = status;
      });
      window.got = {};
      return window.subscribe(topic);
    },
    { url: testbed.addresses.ws, user: `bob-${uniqueId()}`, topic: theirs },
  );
  await eventually('the switched page holds its own connection', () => role(second), (shared) => shared === 'holder');
  await testbed.waitForState('two connections', (state) => state.connections === start.connections + 2);
  assert.equal(await role(first), 'holder', "alice's page holds hers");

  const [hers, his] = [await testbed.publish(mine), await testbed.publish(theirs)];
  await eventually("alice's event", () => got(first), (seen) => seen[mine].length === 1);
  await eventually("bob's event", () => got(second), (seen) => seen[theirs]?.length === 1);
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.deepEqual(await got(first), { [mine]: [hers] });
  assert.deepEqual(await got(second), { [theirs]: [his] });
});

test('a frozen holder hands over, and steps down when it thaws', async (t) => {
  const { testbed } = harness;
  const start = await testbed.state();
  const user = `freezer-${uniqueId()}`;
  const topic = uniqueTopic('doc');
  const pages = [await sharedPage(t, user, [topic]), await sharedPage(t, user, [topic])];
  for (const page of pages) await eventually('connected', () => connected(page));
  const roles = await Promise.all(pages.map(role));
  const holder = pages[roles.indexOf('holder')];
  const follower = pages[roles.indexOf('follower')];
  const seqs = [await testbed.publish(topic)];
  await eventually('the first event', () => got(follower), (seen) => seen[topic].length === 1);

  const cdp = await holder.page.context().newCDPSession(holder.page);
  await cdp.send('Page.setWebLifecycleState', { state: 'frozen' });
  // Headless Chromium (156) reports success but keeps the page's timers
  // running; pausing its JavaScript as well freezes it for certain: no
  // renewal, no message handled, and the Web Lock kept, as a frozen tab does.
  await cdp.send('Debugger.enable');
  await cdp.send('Debugger.pause');
  const frozen = Date.now();
  await eventually('the follower takes over', () => role(follower), (shared) => shared === 'holder');
  const took = Date.now() - frozen;
  assert.ok(took < 2500, `took over in ${took} ms`);
  for (let i = 0; i < 3; i++) seqs.push(await testbed.publish(topic));
  const seen = await eventually('every event at the new holder', () => got(follower), (seen) => seen[topic].length >= 4);
  assert.deepEqual(seen[topic], seqs);

  await cdp.send('Debugger.resume');
  await cdp.send('Page.setWebLifecycleState', { state: 'active' });
  await eventually('the thawed page follows', () => role(holder), (shared) => shared === 'follower');
  await testbed.waitForState('its socket closed: one connection', (state) => state.connections === start.connections + 1);
  // It joins the new holder's subscription: live again, with a resync first if it missed events.
  const rejoined = (others) => others.filter((other) => other === `live ${topic}`).length === 2;
  await eventually('the thawed page live through the new holder', () => holder.evaluate(() => window.others), rejoined);
  const last = await testbed.publish(topic);
  const thawed = await eventually('the thawed page gets events again, through the new holder', () => got(holder), (seen) => seen[topic].at(-1) === last);
  // What it missed while frozen it got from its old socket before it heard of the new term, or it was told to resync: never a silent gap.
  const others = await holder.evaluate(() => window.others);
  if (!others.includes(`resync ${topic} not_recovered`)) assertRun(thawed[topic], 'the thawed page');
  assert.equal(new Set(thawed[topic]).size, thawed[topic].length, `no duplicate: ${thawed[topic]}`);
});

test('a publish from a follower resolves there with its ack; one made while the holder is gone goes through the next', async (t) => {
  const { testbed } = harness;
  const user = `publisher-${uniqueId()}`;
  const topic = uniqueTopic('doc');
  const pages = [await sharedPage(t, user, [topic]), await sharedPage(t, user, [topic]), await sharedPage(t, user, [topic])];
  for (const page of pages) await eventually('connected', () => connected(page));
  const roles = await Promise.all(pages.map(role));
  const holder = pages[roles.indexOf('holder')];
  const [follower, other] = pages.filter((page) => page !== holder);

  const publish = (page, entityId) =>
    page.evaluate(
      ([topic, entityId]) =>
        window.client.publish(topic, 'UPDATED', entityId, { by: 'test' }).then(
          (ack) => ({ seq: ack.seq }),
          (error) => ({ error: error.message, kind: error.kind }),
        ),
      [topic, entityId],
    );
  const { seq } = await publish(follower, 'first');
  assert.equal(typeof seq, 'number', 'acked in the tab that published');
  const refused = await follower.evaluate(
    ([topic, stale]) =>
      window.client.publish(topic, 'UPDATED', '1', {}, { ifSeq: stale }).then(
        () => null,
        (error) => ({ kind: error.kind, currentSeq: error.currentSeq }),
      ),
    [topic, seq - 1],
  );
  assert.deepEqual(refused, { kind: 'conflict', currentSeq: seq }, 'an error reaches the tab too, with its fields');

  // Published while nobody holds the connection: the holder is frozen, its lease has not lapsed yet.
  const cdp = await holder.page.context().newCDPSession(holder.page);
  await cdp.send('Debugger.enable');
  await cdp.send('Debugger.pause');
  const acked = publish(follower, 'during the handover');
  await eventually('a new holder', async () => [await role(follower), await role(other)], (shared) => shared.includes('holder'));
  assert.deepEqual(await acked, { seq: seq + 1 }, 'acked once, through the new holder');
  for (const page of [follower, other]) {
    await eventually('both events in every tab', () => got(page), (seen) => JSON.stringify(seen[topic]) === JSON.stringify([seq, seq + 1]));
  }
  // Thawed, it finds its own lease lapsed and steps down before it reads the publish it missed.
  await cdp.send('Debugger.resume');
  await eventually('the old holder follows', () => role(holder), (shared) => shared === 'follower');
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.deepEqual((await got(other))[topic], [seq, seq + 1], 'published once');
});

test('without Web Locks each page keeps its own connection, and says nothing of sharing', async (t) => {
  const { testbed } = harness;
  const start = await testbed.state();
  const user = `alone-${uniqueId()}`;
  const topic = uniqueTopic('doc');
  const withoutLocks = (page) => page.addInitScript(() => delete Navigator.prototype.locks);
  const pages = [];
  for (let i = 0; i < 2; i++) {
    const app = await open(t, { beforeLoad: withoutLocks });
    await app.evaluate(
      ({ url, user, topic }) => {
        window.got = [];
        window.client = new window.HeraldClient({ url, token: user, shareAcrossTabs: true });
        window.client.onStatus((status) => {
          window.state = status;
        });
        return window.client.subscribe(topic, (message) => message.type === undefined && window.got.push(message.seq)).live;
      },
      { url: testbed.addresses.ws, user, topic },
    );
    pages.push(app);
  }
  await testbed.waitForState('a connection per page', (state) => state.connections === start.connections + 2);
  const seq = await testbed.publish(topic);
  for (const page of pages) {
    assert.deepEqual(await eventually('the event', () => page.evaluate(() => window.got), (seen) => seen.length === 1), [seq]);
    assert.equal(await page.evaluate(() => window.state.shared), undefined);
  }
});

test('<HeraldProvider shareAcrossTabs> under StrictMode: two pages, one connection, both get the event and see one member', async (t) => {
  const { testbed } = harness;
  const start = await testbed.state();
  const props = { url: testbed.addresses.ws, token: `provider-${uniqueId()}`, topic: uniqueTopic('doc') };
  const pages = [await open(t), await open(t)];
  for (const page of pages) {
    await page.mount('sharedTabs', props);
    await page.waitForJson('topic-status', 'live', (status) => status === 'live');
  }
  const roles = await Promise.all(pages.map((page) => page.json('status').then((status) => status.shared)));
  assert.deepEqual(roles.sort(), ['follower', 'holder']);
  assert.equal((await testbed.state()).connections, start.connections + 1, 'one connection');
  for (const page of pages) await page.waitForJson('members', 'one member: the one connection of the user', (members) => members.length === 1);

  const seq = await testbed.publish(props.topic);
  for (const page of pages) {
    const events = (list) => list.filter(({ message }) => message.type === undefined);
    const messages = await page.waitForJson('messages', 'the event', (list) => events(list).length > 0);
    assert.deepEqual(events(messages).map(({ message }) => message.seq), [seq], 'once');
  }
});

test("each tab keeps its own token provider: the holder's is the one called, and after a handover the new holder's", async (t) => {
  const { testbed } = harness;
  const user = `tokens-${uniqueId()}`;
  const topic = uniqueTopic('doc');
  const pages = [];
  for (let i = 0; i < 2; i++) {
    const app = await open(t);
    await app.evaluate(
      ({ url, user, topic }) => {
        window.asked = 0;
        // The dev server takes any token as the user id.
        const getToken = () => {
          window.asked += 1;
          return user;
        };
        window.client = new window.HeraldClient({ url, getToken, shareAcrossTabs: { user } });
        window.client.onStatus((status) => {
          window.state = status;
        });
        return window.client.subscribe(topic, () => {}).live;
      },
      { url: testbed.addresses.ws, user, topic },
    );
    pages.push(app);
  }
  const roles = await eventually('a holder and a follower', () => Promise.all(pages.map(role)), (shared) => shared.includes('holder') && shared.includes('follower'));
  const holder = pages[roles.indexOf('holder')];
  const follower = pages.find((page) => page !== holder);
  const asked = (page) => page.evaluate(() => window.asked);
  assert.ok((await asked(holder)) >= 1, "the holder's provider gave the token");
  assert.equal(await asked(follower), 0, "the follower's was not asked");

  await holder.page.close();
  await eventually('the follower holds the connection', () => role(follower), (shared) => shared === 'holder');
  await eventually("its own provider asked", () => asked(follower), (count) => count >= 1);
  await eventually('connected with it', () => connected(follower));
});

/** A page of `user` whose shared client subscribed to `topic` with presence (and `meta`); its presence messages go to `window.presence`. */
async function presencePage(t, user, topic, meta) {
  const app = await open(t);
  await app.evaluate(
    ({ url, user, topic, meta }) => {
      window.presence = [];
      window.client = new window.HeraldClient({ url, token: user, shareAcrossTabs: true });
      window.client.onStatus((status) => {
        window.state = status;
      });
      const options = meta === null ? { presence: true } : { presence: true, meta };
      return window.client.subscribe(topic, (message) => message.type?.startsWith('presence') && window.presence.push(message), options).live;
    },
    { url: harness.testbed.addresses.ws, user, topic, meta: meta ?? null },
  );
  return app;
}

/** Members and their metadata, from a page's presence messages (as useMembers keeps them). */
async function members(app) {
  const messages = await app.evaluate(() => window.presence);
  let meta = {};
  for (const message of messages) {
    if (message.type === 'presence') meta = Object.fromEntries(message.members.map((user) => [user, message.meta?.[user] ?? null]));
    else {
      for (const user of message.left) delete meta[user];
      for (const user of message.joined) meta[user] = message.meta?.[user] ?? null;
    }
  }
  return meta;
}

test("presence metadata set in any tab is the shared connection's, and a tab that comes later gets the presence as it is", async (t) => {
  const user = `meta-${uniqueId()}`;
  const watcher = `watcher-${uniqueId()}`;
  const topic = uniqueTopic('doc');
  const watching = await presencePage(t, watcher, topic);
  const first = await presencePage(t, user, topic, { name: 'first' });
  const second = await presencePage(t, user, topic);
  await eventually('the user and its metadata', () => members(watching), (seen) => seen[user]?.name === 'first');
  const follower = (await role(first)) === 'follower' ? first : second;

  await follower.evaluate((topic) => window.client.setPresence(topic, { name: 'changed in a follower' }), topic);
  await eventually('the change, seen by another user', () => members(watching), (seen) => seen[user]?.name === 'changed in a follower');

  const late = await presencePage(t, user, topic);
  const seen = await eventually('the presence as it is, in the late tab', () => members(late), (seen) => user in seen && watcher in seen);
  assert.deepEqual(seen[user], { name: 'changed in a follower' });
  await assert.rejects(
    late.evaluate(() => window.client.setPresence('doc:not-subscribed', {})),
    /not subscribed with presence/,
  );
});

