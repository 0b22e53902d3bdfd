// The web demo's entry: asks the backend where Herald listens, then renders.
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { App } from './App.jsx';
import { getJson } from './api.js';
import './app.css';

const GUEST = 'herald-demo-user';

/**
 * Who this window is: `?user=` in the URL, or one guest per browser profile
 * (localStorage), so that the demo's tabs are one user and share one connection.
 */
function userName() {
  const fromUrl = new URLSearchParams(location.search).get('user');
  if (fromUrl) return fromUrl;
  return localStorage.getItem(GUEST) ?? newGuest();
}

function newGuest() {
  const name = `guest-${Math.floor(1000 + Math.random() * 9000)}`;
  localStorage.setItem(GUEST, name);
  return name;
}

/** Another guest for this tab (and the profile's tabs that load after it): its own connection. */
function switchUser() {
  newGuest();
  const url = new URL(location.href);
  url.searchParams.delete('user');
  location.assign(url);
}

const config = await getJson('/api/config');
createRoot(document.getElementById('root')).render(
  <StrictMode>
    <App
      user={userName()}
      onSwitchUser={switchUser}
      list={config.list}
      topic={config.topic}
      outageSecs={config.outageSecs}
      // Herald on a port of its own (`herald demo --web`), or mounted in the
      // backend's app (a path, resolved against the page's origin).
      heraldUrl={config.heraldUrl ?? `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.hostname}:${config.heraldPort}/ws`}
    />
  </StrictMode>,
);
