// webpack 5 through its API, with its defaults for a production build: it
// follows `new URL('herald_bg.wasm', import.meta.url)` and the wasm glue's
// dynamic import by itself.
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import webpack from 'webpack';

const dist = fileURLToPath(new URL('./dist', import.meta.url));
const stats = await new Promise((resolve, reject) =>
  webpack({ mode: 'production', entry: './src/main.js', output: { path: dist, filename: 'app.js', clean: true }, performance: { hints: false } }).run(
    (error, result) => (error ? reject(error) : resolve(result)),
  ),
);
if (stats.hasErrors()) throw new Error(stats.toString('errors-only'));
await writeFile(`${dist}/index.html`, '<!doctype html><meta charset="utf-8"><title>Herald consumer</title><div id="root"></div><script src="/app.js"></script>');
