// The web demo as a user sees it: `herald demo --web` serving the built app,
// two Chromium windows on the same gift list, changes in one showing up in
// the other without a reload, through an outage (events recovered by seq:
// none missed, none twice) and a restart that lost the history (resync).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { access } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
// The package's test support: the same Chromium setup and deadlines.
import { launchBrowser } from '../../pkg/test/support/browser.js';
import { eventually } from '../../pkg/test/support/eventually.js';

const HERALD = process.env.HERALD_BIN ?? fileURLToPath(new URL('../../target/debug/herald', import.meta.url));
const DIST = fileURLToPath(new URL('../dist', import.meta.url));
const OUTAGE_SECS = 3;

let demo;
let browser;

/** Starts `herald demo --web` on a free port; resolves with `{url, lines, stop()}`. */
async function startDemo() {
  await access(HERALD).catch(() => {
    throw new Error(`${HERALD} is missing: build it with \`cargo build -p herald-cli\` or set HERALD_BIN`);
  });
  const args = ['demo', '--web', '--addr', '127.0.0.1:0', '--static', DIST, '--shopper-every', '0s'];
  const child = spawn(HERALD, [...args, '--outage', `${OUTAGE_SECS}s`], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = [];
  const url = await new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`herald demo --web exited with ${code}: ${lines.join('\n')}`)));
    createInterface({ input: child.stdout }).on('line', (line) => {
      lines.push(line);
      const found = line.match(/open (http:\/\/127\.0\.0\.1:\d+)/);
      if (found) resolve(found[1]);
    });
  });
  const stop = () =>
    new Promise((resolve) => {
      if (child.exitCode !== null) return resolve();
      child.once('exit', resolve);
      child.kill('SIGINT');
    });
  return { url, lines, stop };
}

before(async () => {
  demo = await startDemo();
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  await demo?.stop();
});

async function openAs(user) {
  const page = await browser.context.newPage();
  page.on('pageerror', (error) => assert.fail(`${user}'s page threw: ${error.message}`));
  await page.goto(`${demo.url}/?user=${user}`);
  return page;
}

const api = async (path, init) => {
  const response = await fetch(`${demo.url}${path}`, init);
  assert.ok(response.ok, `${path}: ${response.status} ${await response.clone().text()}`);
  return response.status === 200 || response.status === 201 ? response.json() : null;
};
const addGift = (name) =>
  api('/api/lists/family-123/gifts', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name, by: 'test' }),
  });
const serverNames = async () => (await api('/api/lists/family-123')).map((gift) => gift.name);
const pageNames = (page) => page.locator('[data-testid=gifts] .name').allTextContents();
const state = (page) => page.getAttribute('[data-testid=status]', 'data-state');
const integrity = async (page) => ({
  ok: await page.getAttribute('[data-testid=integrity]', 'data-ok'),
  text: await page.textContent('[data-testid=integrity]'),
});

async function showsServerList(page, what) {
  const expected = await serverNames();
  await eventually(`${what}: ${JSON.stringify(expected)}`, () => pageNames(page), (names) =>
    JSON.stringify(names) === JSON.stringify(expected),
  );
}

test('two windows stay in sync through changes, an outage and a restart that lost the history', async () => {
  const alice = await openAs('alice');
  const bob = await openAs('bob');
  for (const page of [alice, bob]) await eventually('a live connection', () => state(page), (s) => s === 'connected');
  await eventually('both viewers in presence', () => alice.textContent('[data-testid=viewers]'), (text) =>
    text === 'alice, bob',
  );

  // A change in one window reaches the other, which refetches its list.
  const bobFetches = Number(await bob.getAttribute('[data-testid=fetches]', 'data-count'));
  await alice.fill('input[name=gift]', 'Telescope');
  await alice.click('button[type=submit]');
  await eventually("alice's gift in bob's window", () => pageNames(bob), (names) => names.includes('Telescope'));
  assert.ok(Number(await bob.getAttribute('[data-testid=fetches]', 'data-count')) > bobFetches, 'bob refetched');
  await bob.locator('li', { hasText: 'Telescope' }).getByRole('checkbox').click(); // checked once the list is refetched
  await eventually("bob's purchase in alice's window", () => alice.locator('li.bought .name').allTextContents(), (names) =>
    names.includes('Telescope'),
  );

  // Outage with the history kept: the backend keeps saving and announcing;
  // both windows get every missed event once, in order, and refetch.
  await alice.getByRole('button', { name: /Outage/ }).click();
  for (const page of [alice, bob]) {
    await eventually('reconnecting during the outage', () => state(page), (s) => s === 'reconnecting');
  }
  const missed = [await addGift('Added during the outage 1'), await addGift('Added during the outage 2')];
  for (const page of [alice, bob]) {
    await eventually('back after the outage', () => state(page), (s) => s === 'connected', { timeoutMs: 20_000 });
    await showsServerList(page, 'the list with the changes made during the outage');
    const log = await eventually('the missed events, recovered', () => page.textContent('[data-testid=log]'), (log) =>
      missed.every((gift) => log.includes(`ADDED ${gift.id} by test`)),
    );
    assert.ok(!log.includes('resync'), `recovered by seq, not resynced: ${log}`);
    const seen = await integrity(page);
    assert.equal(seen.ok, 'true', `no gaps or duplicates after the outage: ${seen.text}`);
    assert.match(seen.text, /none missed, none twice/);
  }

  // A restart that lost the history cannot be recovered from: a resync.
  await bob.getByRole('button', { name: /Restart/ }).click();
  for (const page of [alice, bob]) {
    await eventually('a resync after the restart', () => page.textContent('[data-testid=log]'), (log) =>
      log.includes('resync'),
    );
  }
  await addGift('After the restart');
  for (const page of [alice, bob]) {
    await showsServerList(page, 'the list after the restart');
    assert.equal((await integrity(page)).ok, 'true');
  }
  assert.ok(demo.lines.some((line) => line.includes('pages resync')), 'the terminal tells what happened');
});

test('a write that loses a race says why in the page, and the list is right again', async () => {
  const page = await openAs('carol');
  await eventually('a live connection', () => state(page), (s) => s === 'connected');
  const { id } = await addGift('Raced');
  await eventually('the gift on the page', () => pageNames(page), (names) => names.includes('Raced'));
  // Someone else deletes it while this page's own delete is on its way.
  await page.route(`**/api/lists/family-123/gifts/${id}`, async (route) => {
    await api(`/api/lists/family-123/gifts/${id}`, { method: 'DELETE' });
    await route.continue();
  });
  await page.locator('li', { hasText: 'Raced' }).getByTitle('Remove').click();
  await eventually('the error', () => page.getByRole('alert').textContent(), (text) => text.includes('deleted meanwhile'));
  await showsServerList(page, 'the list without the deleted gift');
});

/** Holds this page's POSTs of new gifts until the returned function is called. */
async function holdAdds(page) {
  let release;
  const held = new Promise((resolve) => (release = resolve));
  await page.route('**/api/lists/family-123/gifts', async (route) => {
    if (route.request().method() === 'POST') await held;
    await route.continue();
  });
  return release;
}

const pendingNames = (page) => page.locator('[data-testid=gifts] li.pending .name').allTextContents();

test('a new gift shows at once, settles on its event, and one the backend refuses is taken back', async () => {
  const page = await openAs('dora');
  await eventually('a live connection', () => state(page), (s) => s === 'connected');

  let release = await holdAdds(page);
  await page.fill('input[name=gift]', 'Kite');
  await page.click('button[type=submit]');
  await eventually('the gift shown before the backend answered', () => pendingNames(page), (names) => names.includes('Kite'));
  release();
  await eventually('settled by the event: no longer pending', () => pendingNames(page), (names) => names.length === 0);
  await showsServerList(page, 'the list with the new gift');

  // The backend refuses names over 80 characters.
  const tooLong = 'A kite with a very long name '.repeat(3).trim();
  assert.ok(tooLong.length > 80);
  release = await holdAdds(page);
  await page.fill('input[name=gift]', tooLong);
  await page.click('button[type=submit]');
  await eventually('the refused gift shown at first', () => pendingNames(page), (names) => names.includes(tooLong));
  release();
  await eventually('the backend says why', () => page.getByRole('alert').textContent(), (text) => text.includes('a gift needs a name'));
  await eventually('the gift taken back', () => pageNames(page), (names) => !names.includes(tooLong));
  await showsServerList(page, 'the list as the backend has it');
  await page.unrouteAll();
});

test('typing in one window shows in the other, and the indicator expires when the typing stops', async () => {
  const erin = await openAs('erin');
  const finn = await openAs('finn');
  for (const page of [erin, finn]) await eventually('a live connection', () => state(page), (s) => s === 'connected');
  const typing = (page) => page.textContent('[data-testid=typing]');

  await erin.fill('input[name=gift]', 'Bicy');
  const shown = Date.now();
  await eventually("erin typing, in finn's window", () => typing(finn), (text) => text.includes('erin is typing'));
  assert.ok(!(await typing(erin)).includes('erin'), 'nobody is told they are typing themselves');
  await eventually('the indicator gone once erin stopped', () => typing(finn), (text) => !text.includes('erin'), { timeoutMs: 15_000 });
  assert.ok(Date.now() - shown >= 3_000, 'not before it expired (5 s after the last keystroke)');
  // Typing indicators are ephemeral: none reaches the event log.
  assert.ok(!(await finn.textContent('[data-testid=log]')).includes('TYPING'));
});

test("a guest's tabs share one connection, another takes it over when its holder closes, and switch user gives a tab its own", async () => {
  // No ?user=: the guest kept in the profile's localStorage, one for every tab.
  const open = async () => {
    const page = await browser.context.newPage();
    page.on('pageerror', (error) => assert.fail(`a guest's page threw: ${error.message}`));
    await page.goto(demo.url);
    await eventually('a live connection', () => state(page), (s) => s === 'connected');
    return page;
  };
  const shared = (page) => page.textContent('[data-testid=shared]');
  const pages = [await open(), await open()];
  const [first, second] = await Promise.all(pages.map((page) => page.textContent('[data-testid=user]')));
  assert.match(first, /^guest-\d+$/);
  assert.equal(second, first, 'one guest for the profile');
  const roles = await eventually('one holder, one follower', () => Promise.all(pages.map(shared)), (texts) =>
    JSON.stringify([...texts].sort()) === JSON.stringify(['shared connection: follower', 'shared connection: holder']),
  );
  const holder = pages[roles.indexOf('shared connection: holder')];
  const follower = pages.find((page) => page !== holder);

  await holder.close();
  await eventually('the other tab holds it now', () => shared(follower), (text) => text === 'shared connection: holder', { timeoutMs: 2_000 });
  await eventually('and is live', () => state(follower), (s) => s === 'connected');

  await follower.click('[data-testid=switch-user]');
  await eventually('another guest', () => follower.textContent('[data-testid=user]'), (user) => /^guest-\d+$/.test(user) && user !== first);
  await eventually('live on a connection of its own', () => state(follower), (s) => s === 'connected');
  assert.equal(await shared(follower), 'shared connection: holder');
  await follower.close();
});

