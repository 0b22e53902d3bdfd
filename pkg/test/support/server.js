// A static server on 127.0.0.1 for the test app, plus the app's fake REST
// API, which counts requests: a refetch is a request the test can count.

import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';

const PAGE = '<!doctype html><meta charset="utf-8"><title>herald test app</title><div id="root"></div><script type="module" src="/app.js"></script>';

const FILES = {
  '/app.js': 'text/javascript',
  '/app.js.map': 'application/json',
  // The wasm MIME type lets the browser compile while downloading.
  '/herald_bg.wasm': 'application/wasm',
  '/herald_tabs_bg.wasm': 'application/wasm',
};

/**
 * Serves `dir`; resolves with `{url, hits(path), hold(prefix), release(), close()}`.
 * `GET /api/gifts/<id>` answers a list whose one gift is named after the
 * request's number; any other `GET /api/...` answers `{path, fetch}`, or
 * waits for `release()` while its path starts with a `hold` prefix. The page
 * `/?csp=<policy>` comes with that Content-Security-Policy. WebSocket
 * upgrades of `/ws` go through to `wsTarget` (`host:port`), so that a page
 * can connect to a relative URL.
 */
export async function serveApp(dir, wsTarget) {
  const hits = new Map();
  let held = null;
  let waiting = [];
  const server = createServer(async (request, response) => {
    const { pathname, searchParams } = new URL(request.url, 'http://127.0.0.1');
    const send = (status, type, body) => {
      response.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      response.end(body);
    };
    try {
      if (pathname === '/') {
        if (searchParams.has('csp')) response.setHeader('content-security-policy', searchParams.get('csp'));
        return send(200, 'text/html', PAGE);
      }
      // Browsers ask for it on every page; a 404 would log an error.
      if (pathname === '/favicon.ico') return send(204, 'image/x-icon', '');
      if (FILES[pathname]) return send(200, FILES[pathname], await readFile(join(dir, pathname)));
      if (pathname.startsWith('/api/')) {
        const fetch = (hits.get(pathname) ?? 0) + 1;
        hits.set(pathname, fetch);
        if (held !== null && pathname.startsWith(held)) await new Promise((resolve) => waiting.push(resolve));
        const gifts = pathname.startsWith('/api/gifts/') && [{ id: 'gift-7', name: `Scarf, fetch ${fetch}` }];
        return send(200, 'application/json', JSON.stringify(gifts || { path: pathname, fetch }));
      }
      send(404, 'text/plain', `no ${pathname} here`);
    } catch (error) {
      send(500, 'text/plain', String(error));
    }
  });
  server.on('upgrade', (request, socket, head) => {
    const [host, port] = wsTarget.split(':');
    const upstream = connect(Number(port), host, () => {
      upstream.write(`${request.method} ${request.url} HTTP/1.1\r\n`);
      for (let i = 0; i < request.rawHeaders.length; i += 2) upstream.write(`${request.rawHeaders[i]}: ${request.rawHeaders[i + 1]}\r\n`);
      upstream.write('\r\n');
      upstream.write(head);
      socket.pipe(upstream).pipe(socket);
    });
    upstream.on('error', () => socket.destroy());
    socket.on('error', () => upstream.destroy());
  });
  await new Promise((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    hits: (path) => hits.get(path) ?? 0,
    hold: (prefix) => {
      held = prefix;
    },
    release: () => {
      held = null;
      waiting.forEach((resolve) => resolve());
      waiting = [];
    },
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}
