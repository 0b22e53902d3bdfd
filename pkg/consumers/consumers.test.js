// The bundler matrix: the same small app (app/) built by Vite 5, Vite 6
// (its default target), the current Vite (each in dev and in build),
// webpack 5, esbuild and Next.js (App Router, plus an edge route), each with
// @herald/realtime from the packed tarball, each driven in one Chromium
// until it shows a live event from the testbed. Every tool is pinned in its
// folder's package-lock.json and installed beforehand (`cargo xtask
// install`); nothing here reaches the network.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cp, mkdir, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { launchBrowser } from '../test/support/browser.js';
import { eventually } from '../test/support/eventually.js';
import { installTarball } from '../test/support/packed.js';
import { Testbed } from '../test/support/testbed.js';
import { uniqueTopic } from '../test/support/topics.js';

const here = (path) => fileURLToPath(new URL(path, import.meta.url));

let testbed;
let browser;
const stops = [];
before(async () => {
  testbed = Testbed.fromEnv();
  browser = await launchBrowser();
});
after(async () => {
  await Promise.all(stops.map((stop) => stop()));
  await browser?.close();
});

/** A free port on loopback, for tools that want one named. */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = createNetServer().once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Runs a tool in a consumer's folder; fails with its output. */
function run(dir, command, args) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: dir, env: { ...process.env, NEXT_TELEMETRY_DISABLED: '1' } });
    let output = '';
    child.stdout.on('data', (chunk) => (output += chunk));
    child.stderr.on('data', (chunk) => (output += chunk));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve(output) : reject(new Error(`${command} ${args.join(' ')} in ${dir} exited with ${code}:\n${output}`))));
  });
}

/** Starts a long-running tool (a dev server); resolves once `url` answers; registers its stop. */
async function serve(dir, command, args, url) {
  const child = spawn(command, args, { cwd: dir, env: { ...process.env, NEXT_TELEMETRY_DISABLED: '1' }, detached: true });
  let output = '';
  child.stdout.on('data', (chunk) => (output += chunk));
  child.stderr.on('data', (chunk) => (output += chunk));
  stops.push(
    () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', resolve);
        process.kill(-child.pid, 'SIGTERM');
      }),
  );
  await eventually(`${command} ${args.join(' ')} to serve ${url} (output so far: ${output.slice(-2000)})`, () => fetch(url).then((r) => r.ok), Boolean, { timeoutMs: 60_000 });
}

/** A static server for a build: the wasm as application/wasm, every unknown path the index page. */
async function serveStatic(dist) {
  const types = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm', '.css': 'text/css' };
  const server = createServer(async (request, response) => {
    const path = new URL(request.url, 'http://x').pathname;
    const file = path === '/' ? '/index.html' : path;
    try {
      const body = await readFile(join(dist, file));
      response.writeHead(200, { 'content-type': types[file.slice(file.lastIndexOf('.'))] ?? 'application/octet-stream' });
      response.end(body);
    } catch {
      response.writeHead(404).end();
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  stops.push(() => new Promise((resolve) => server.close(resolve)));
  return `http://127.0.0.1:${server.address().port}`;
}

/** A consumer's folder with the tarball installed and the shared app copied to `into`. */
async function prepare(name, into = 'src') {
  const dir = here(`./${name}`);
  await installTarball(dir);
  await rm(join(dir, into === 'src' ? 'src' : 'app/live.js'), { recursive: true, force: true });
  if (into === 'src') await cp(here('./app'), join(dir, 'src'), { recursive: true });
  else await cp(here('./app/live.js'), join(dir, 'app/live.js'));
  return dir;
}

/** The app's text in `[data-testid=id]`. */
const textOf = (page, id) => page.evaluate((testId) => document.querySelector(`[data-testid="${testId}"]`)?.textContent ?? null, id);

/** Opens the app at `origin` in Chromium and waits for a live event published through the testbed. */
async function showsALiveEvent(origin, what) {
  const topic = uniqueTopic('bundler');
  const page = await browser.context.newPage();
  const errors = [];
  page.on('pageerror', (error) => errors.push(error.message));
  try {
    const query = new URLSearchParams({ ws: testbed.addresses.ws, topic });
    await page.goto(`${origin}/?${query}`, { timeout: 30_000 });
    const text = (id) => textOf(page, id);
    await eventually(`${what}: the app to connect`, () => text('status'), (status) => status === 'connected', { timeoutMs: 30_000 });
    // The subscription may reach the server just after the status changes: publish until one arrives.
    await eventually(
      `${what}: a live event`,
      async () => {
        await testbed.publish(topic, { entityId: 'live-1' });
        return text('event');
      },
      (entity) => entity === 'live-1',
      { timeoutMs: 15_000 },
    );
    assert.deepEqual(errors, [], `${what}: no uncaught error`);
  } finally {
    await page.close();
  }
}

const vites = ['vite5', 'vite6', 'vite8'];

for (const name of vites) {
  test(`${name}: the dev server and the build both show a live event`, async () => {
    const dir = await prepare(name);
    const vite = join(dir, 'node_modules/.bin/vite');
    const port = await freePort();
    await serve(dir, vite, ['--port', String(port), '--strictPort', '--host', '127.0.0.1'], `http://127.0.0.1:${port}/`);
    await showsALiveEvent(`http://127.0.0.1:${port}`, `${name} dev`);
    await run(dir, vite, ['build', '--logLevel', 'warn']);
    await showsALiveEvent(await serveStatic(join(dir, 'dist')), `${name} build`);
  });
}

test("vite6 dev without optimizeDeps.exclude: the app renders and the client's status says what to change", async () => {
  const dir = await prepare('vite6');
  const port = await freePort();
  const vite = join(dir, 'node_modules/.bin/vite');
  await serve(dir, vite, ['--config', 'plain.config.js', '--port', String(port), '--strictPort', '--host', '127.0.0.1'], `http://127.0.0.1:${port}/`);
  const page = await browser.context.newPage();
  try {
    await page.goto(`http://127.0.0.1:${port}/?${new URLSearchParams({ ws: testbed.addresses.ws, topic: 'bundler:plain' })}`);
    await eventually('the status to say the wasm did not load', () => textOf(page, 'status'), (state) => state === 'disconnected', { timeoutMs: 30_000 });
    const status = await page.evaluate(() => window.__heraldStatus);
    assert.equal(await textOf(page, 'rendered'), 'Herald consumer', 'the app kept rendering');
    assert.match(status?.message ?? '', /optimizeDeps: \{ exclude: \['@herald\/realtime'\] \}/, JSON.stringify(status));
  } finally {
    await page.close();
  }
});

test('webpack 5: the build shows a live event', async () => {
  const dir = await prepare('webpack5');
  await run(dir, process.execPath, ['build.js']);
  await showsALiveEvent(await serveStatic(join(dir, 'dist')), 'webpack 5');
});

test('esbuild: the build shows a live event', async () => {
  const dir = await prepare('esbuild');
  await run(dir, process.execPath, ['build.js']);
  await showsALiveEvent(await serveStatic(join(dir, 'dist')), 'esbuild');
});

test('Next.js App Router: the production build renders on the server, shows a live event, and an edge route imports the package', async () => {
  const dir = await prepare('next', 'app');
  await mkdir(join(dir, 'app/edge'), { recursive: true });
  const next = join(dir, 'node_modules/.bin/next');
  await run(dir, next, ['build']);
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  await serve(dir, next, ['start', '--port', String(port), '--hostname', '127.0.0.1'], `${origin}/edge`);
  const html = await (await fetch(`${origin}/`)).text();
  assert.match(html, /Herald consumer/, 'the page rendered on the server');
  const edge = await (await fetch(`${origin}/edge`)).json();
  assert.equal(edge.state, 'unsupported', `the edge route's client: ${JSON.stringify(edge)}`);
  await showsALiveEvent(origin, 'Next.js');
});

test("the package README's Vitest and Jest recipes pass against the tarball, in jsdom", async () => {
  for (const [name, command] of [
    ['vitest', ['node_modules/.bin/vitest', 'run']],
    ['jest', ['node_modules/.bin/jest', '--ci']],
  ]) {
    const dir = here(`./${name}`);
    await installTarball(dir);
    const output = await run(dir, join(dir, command[0]), command.slice(1));
    assert.match(output, /2 passed/, `${name}:\n${output}`);
  }
});
