// The entry of the client-only bundlers (Vite, webpack, esbuild).
import { createElement as h } from 'react';
import { createRoot } from 'react-dom/client';
import { Live } from './live.js';

createRoot(document.getElementById('root')).render(h(Live));
