// The package entry: the wasm is instantiated once, here, so that
// `new HeraldClient(...)` works synchronously after the import.
import init, { HeraldClient as BrowserClient } from './dist/herald.js';

// Server-side rendering imports this module too, but the client only runs in
// browsers (applications create it in effects), and Node cannot fetch the
// wasm by URL. So Node skips loading it, and constructing a client there
// fails with a message that says why instead of a crash inside the glue.
const inNode = globalThis.process?.versions?.node !== undefined;

if (!inNode) await init();

export const HeraldClient = inNode
  ? class HeraldClient {
      constructor() {
        throw new Error('HeraldClient runs in browsers only; on a server, create it in an effect (see the README: SSR)');
      }
    }
  : BrowserClient;
