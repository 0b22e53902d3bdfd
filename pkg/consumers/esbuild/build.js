// esbuild, code-split ES modules. esbuild leaves `new URL('herald_bg.wasm',
// import.meta.url)` as it is, so the wasm is copied next to the bundle, as
// the package README says.
import { copyFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const dist = fileURLToPath(new URL('./dist', import.meta.url));
await esbuild.build({
  entryPoints: ['src/main.js'],
  outdir: dist,
  bundle: true,
  splitting: true,
  format: 'esm',
  minify: true,
  define: { 'process.env.NODE_ENV': '"production"' },
  logLevel: 'warning',
});
const wasm = createRequire(import.meta.url).resolve('@herald/realtime/herald_bg.wasm');
await copyFile(wasm, `${dist}/herald_bg.wasm`);
await writeFile(`${dist}/index.html`, '<!doctype html><meta charset="utf-8"><title>Herald consumer</title><div id="root"></div><script type="module" src="/main.js"></script>');
