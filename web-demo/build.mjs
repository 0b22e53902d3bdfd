// Builds the demo into dist/: index.html, app.js (React, TanStack Query and
// @herald/realtime bundled by esbuild), app.css, and the package's wasm next
// to app.js, where the wasm-bindgen glue fetches it from: both builds, since
// the demo's client shares its connection across tabs where the browser can
// (herald_tabs_bg.wasm) and keeps its own elsewhere (herald_bg.wasm).
import { copyFile, mkdir, rm } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const here = (path) => fileURLToPath(new URL(path, import.meta.url));
const dist = here('./dist');

await rm(dist, { recursive: true, force: true });
await mkdir(dist, { recursive: true });
await esbuild.build({
  entryPoints: { app: here('./src/main.jsx') },
  outdir: dist,
  bundle: true,
  format: 'esm',
  target: 'es2022',
  jsx: 'automatic',
  minify: true,
  sourcemap: 'linked',
  // The package is linked from ../pkg, which has a React of its own for
  // its tests: resolve every import of React from here, so the page has one.
  absWorkingDir: here('.'),
  alias: { react: './node_modules/react', 'react-dom': './node_modules/react-dom' },
  define: { 'process.env.NODE_ENV': '"production"' },
  logLevel: 'warning',
});
await copyFile(here('./index.html'), `${dist}/index.html`);
for (const build of ['herald_bg.wasm', 'herald_tabs_bg.wasm']) {
  const wasm = fileURLToPath(import.meta.resolve(`@herald/realtime/${build}`));
  await copyFile(wasm, `${dist}/${build}`).catch((error) => {
    throw new Error(`${wasm} is missing (${error.code}): build the package first with \`cargo xtask wasm\``);
  });
}
console.log(`built ${dist}`);
