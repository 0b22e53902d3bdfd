// Bundles the test app (test/app) with esbuild into a temporary folder, with
// the package's wasm next to the bundle, where the wasm-bindgen glue fetches
// it from (`new URL('herald_bg.wasm', import.meta.url)`). `@herald/realtime`
// is the packed tarball (support/packed.js), not this folder.

import { copyFile, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { packedPackage } from './packed.js';

const entry = fileURLToPath(new URL('../app/main.jsx', import.meta.url));

/** Resolves with `{dir, remove()}`: `dir` holds app.js and herald_bg.wasm. */
export async function buildApp() {
  const consumer = await packedPackage();
  // From the unpacked tarball, through its exports map, as an application would find it.
  const fromTarball = {
    name: 'packed @herald/realtime',
    setup(build) {
      build.onResolve({ filter: /^@herald\/realtime(\/|$)/ }, ({ path, kind, resolveDir }) =>
        // Inside the unpacked folder, esbuild's own resolution (this plugin's resolve lands here).
        resolveDir === consumer ? undefined : build.resolve(path, { kind, resolveDir: consumer }),
      );
    },
  };
  const wasm = join(consumer, 'node_modules/@herald/realtime/dist/herald_bg.wasm');
  await stat(wasm).catch(() => {
    throw new Error(`${wasm} is missing: build the wasm first with \`cargo xtask wasm\` at the repository root`);
  });
  const dir = await mkdtemp(join(tmpdir(), 'herald-test-app-'));
  await esbuild.build({
    entryPoints: { app: entry },
    outdir: dir,
    bundle: true,
    format: 'esm',
    target: 'es2022',
    jsx: 'automatic',
    sourcemap: 'linked',
    // React's development build: the one whose StrictMode mounts twice.
    define: { 'process.env.NODE_ENV': '"development"' },
    logLevel: 'silent',
    plugins: [fromTarball],
  });
  await copyFile(wasm, join(dir, 'herald_bg.wasm'));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}
