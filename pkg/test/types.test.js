// The hand-written declarations (index.d.ts, react.d.ts) against a usage
// file, with the pinned TypeScript: what must compile does, what must not
// is marked @ts-expect-error (an unused one fails the check).

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { promisify } from 'node:util';

const tsc = fileURLToPath(new URL('../node_modules/typescript/bin/tsc', import.meta.url));
const project = fileURLToPath(new URL('./types/tsconfig.json', import.meta.url));

test('index.d.ts and react.d.ts type-check against test/types/usage.tsx', async () => {
  const result = await promisify(execFile)(process.execPath, [tsc, '--noEmit', '-p', project], { timeout: 120_000 }).then(
    () => null,
    (error) => error,
  );
  assert.equal(result, null, `tsc failed:\n${result?.stdout}${result?.stderr}`);
});
