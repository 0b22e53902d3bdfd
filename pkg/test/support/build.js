// Bundles the test app (test/app) with esbuild into a temporary folder, with
// the package's two wasm builds next to the bundle, where the wasm-bindgen
// glue fetches them from (`new URL('herald_bg.wasm', import.meta.url)`). `@herald/realtime`
// is the packed tarball (support/packed.js), not this folder.

import { copyFile, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { packedPackage } from './packed.js';

const entry = fileURLToPath(new URL('../app/main.jsx', import.meta.url));

/** Resolves with `{dir, remove()}`: `dir` holds app.js, herald_bg.wasm and herald_tabs_bg.wasm. */
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
  const builds = ['herald_bg.wasm', 'herald_tabs_bg.wasm'];
  for (const build of builds) {
    const wasm = join(consumer, 'node_modules/@herald/realtime/dist', build);
    await stat(wasm).catch(() => {
      throw new Error(`${wasm} is missing: build the wasm first with \`cargo xtask wasm\` at the repository root`);
    });
  }
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
  for (const build of builds) await copyFile(join(consumer, 'node_modules/@herald/realtime/dist', build), join(dir, build));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}
