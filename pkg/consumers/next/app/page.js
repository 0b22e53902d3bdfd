// A server component rendering the client component ('use client' in live.js).
import { Live } from './live.js';

export default function Page() {
  return <Live />;
}
