// The web demo's entry: asks the backend where Herald listens, then renders.
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { App } from './App.jsx';
import { getJson } from './api.js';
import './app.css';

/** Who this window is: `?user=` in the URL, or a guest name kept for the tab's lifetime. */
function userName() {
  const fromUrl = new URLSearchParams(location.search).get('user');
  if (fromUrl) return fromUrl;
  let name = sessionStorage.getItem('herald-demo-user');
  if (!name) {
    name = `guest-${Math.floor(1000 + Math.random() * 9000)}`;
    sessionStorage.setItem('herald-demo-user', name);
  }
  return name;
}

const config = await getJson('/api/config');
createRoot(document.getElementById('root')).render(
  <StrictMode>
    <App
      user={userName()}
      list={config.list}
      topic={config.topic}
      outageSecs={config.outageSecs}
      // Herald on a port of its own (`herald demo --web`), or mounted in the
      // backend's app (a path, resolved against the page's origin).
      heraldUrl={config.heraldUrl ?? `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.hostname}:${config.heraldPort}/ws`}
    />
  </StrictMode>,
);
