// What `npm publish` would ship: exactly the entry points, their types,
// the wasm build, the README and the licenses (copied in by `cargo xtask wasm`).

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { promisify } from 'node:util';

const root = fileURLToPath(new URL('..', import.meta.url));

test('npm pack lists exactly the intended files', async () => {
  const { stdout } = await promisify(execFile)('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, timeout: 60_000 });
  const [{ files }] = JSON.parse(stdout);
  assert.deepEqual(files.map((file) => file.path).sort(), [
    'LICENSE-APACHE',
    'LICENSE-MIT',
    'README.md',
    'dist/herald.js',
    'dist/herald_bg.wasm',
    'dist/herald_tabs.js',
    'dist/herald_tabs_bg.wasm',
    'index.cjs',
    'index.d.ts',
    'index.js',
    'package.json',
    'react.cjs',
    'react.d.ts',
    'react.js',
    'require.cjs',
    'shared.js',
    'testing.cjs',
    'testing.d.ts',
    'testing.js',
    'topic.js',
  ]);
});
