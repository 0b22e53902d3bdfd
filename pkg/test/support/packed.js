// The package as users install it: the tarball `npm pack` makes (the one in
// HERALD_TARBALL, which `cargo xtask browser` packs, or a fresh one),
// unpacked as npm would into test/.packed/node_modules/@herald/realtime, so
// that what it imports (react) resolves from this folder's node_modules.

import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const pkg = fileURLToPath(new URL('../..', import.meta.url));
const packed = fileURLToPath(new URL('../.packed', import.meta.url));

/** `npm pack` of pkg/ into `dir`; resolves with the tarball's path. */
export async function pack(dir) {
  const { stdout } = await run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', dir], { cwd: pkg, timeout: 60_000 });
  return join(dir, JSON.parse(stdout)[0].filename);
}

let tarball = null;

/** The tarball: HERALD_TARBALL, or one packed now (once per process). */
function theTarball() {
  tarball ??= process.env.HERALD_TARBALL
    ? Promise.resolve(process.env.HERALD_TARBALL)
    : mkdtemp(join(tmpdir(), 'herald-pack-')).then(pack);
  return tarball;
}

/** Installs the tarball into `dir`/node_modules/@herald/realtime, unpacked as npm does (npm's tarballs hold one folder, `package/`). */
export async function installTarball(dir) {
  const target = join(dir, 'node_modules/@herald/realtime');
  await rm(target, { recursive: true, force: true });
  await mkdir(target, { recursive: true });
  await run('tar', ['-xzf', await theTarball(), '-C', target, '--strip-components=1']);
}

let unpacked = null;

/** Resolves with the folder that holds node_modules/@herald/realtime, unpacked from the tarball (once per process). */
export function packedPackage() {
  unpacked ??= installTarball(packed).then(() => packed);
  return unpacked;
}
