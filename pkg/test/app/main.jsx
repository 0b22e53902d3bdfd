// The page the browser tests drive: `window.harness` mounts one scenario of
// scenarios.jsx at a time, renders it again with new props, unmounts it.
import { HeraldClient } from '@herald/realtime';
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import * as scenarios from './scenarios.jsx';

let mounted = null;

function render(props) {
  const { root, Scenario, strict } = mounted;
  const element = <Scenario {...props} />;
  root.render(strict ? <StrictMode>{element}</StrictMode> : element);
}

// For tests that make a client of their own.
window.HeraldClient = HeraldClient;

window.harness = {
  mount(name, props, { strict }) {
    const Scenario = scenarios[name];
    if (!Scenario) throw new Error(`no scenario "${name}"; there are ${Object.keys(scenarios).join(', ')}`);
    if (mounted) throw new Error('a scenario is mounted already');
    mounted = { root: createRoot(document.getElementById('root')), Scenario, strict };
    render(props);
  },
  update: render,
  unmount() {
    mounted.root.unmount();
    mounted = null;
  },
};
