// A static server on 127.0.0.1 for the test app, plus the app's fake REST
// API, which counts requests: a refetch is a request the test can count.

import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { join } from 'node:path';

const PAGE = '<!doctype html><meta charset="utf-8"><title>herald test app</title><div id="root"></div><script type="module" src="/app.js"></script>';

const FILES = {
  '/app.js': 'text/javascript',
  '/app.js.map': 'application/json',
  // The wasm MIME type lets the browser compile while downloading.
  '/herald_bg.wasm': 'application/wasm',
};

/**
 * Serves `dir`; resolves with `{url, hits(path), close()}`. `GET /api/gifts/<id>`
 * answers a list whose one gift is named after the request's number;
 * any other `GET /api/...` answers `{path, fetch}`.
 */
export async function serveApp(dir) {
  const hits = new Map();
  const server = createServer(async (request, response) => {
    const { pathname } = new URL(request.url, 'http://127.0.0.1');
    const send = (status, type, body) => {
      response.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      response.end(body);
    };
    try {
      if (pathname === '/') return send(200, 'text/html', PAGE);
      // Browsers ask for it on every page; a 404 would log an error.
      if (pathname === '/favicon.ico') return send(204, 'image/x-icon', '');
      if (FILES[pathname]) return send(200, FILES[pathname], await readFile(join(dir, pathname)));
      if (pathname.startsWith('/api/')) {
        const fetch = (hits.get(pathname) ?? 0) + 1;
        hits.set(pathname, fetch);
        const gifts = pathname.startsWith('/api/gifts/') && [{ id: 'gift-7', name: `Scarf, fetch ${fetch}` }];
        return send(200, 'application/json', JSON.stringify(gifts || { path: pathname, fetch }));
      }
      send(404, 'text/plain', `no ${pathname} here`);
    } catch (error) {
      send(500, 'text/plain', String(error));
    }
  });
  await new Promise((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    hits: (path) => hits.get(path) ?? 0,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}
