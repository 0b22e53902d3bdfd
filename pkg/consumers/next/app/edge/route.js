// The package imported in the edge runtime: the import must not touch the
// wasm, and a client made there stays unsupported.
import { HeraldClient } from '@herald/realtime';

export const runtime = 'edge';

export function GET() {
  return Response.json(new HeraldClient({ url: 'wss://example.com/ws', token: 't' }).status());
}
