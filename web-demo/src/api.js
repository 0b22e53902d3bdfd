// The gift-list REST API of the demo's backends: `herald demo --web`, or
// `examples/axum_service.rs`. Errors carry the backend's message, which the
// page shows as is.

async function call(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) {
    const text = await response.text();
    let message = `${method} ${path} answered ${response.status}`;
    try {
      message = JSON.parse(text).error ?? message;
    } catch {
      // Not JSON (e.g. a proxy's page): keep the status line.
    }
    throw new Error(message);
  }
  return response.status === 204 || response.status === 202 ? null : response.json();
}

export const getJson = (path) => call('GET', path);

export const gifts = {
  // The axum example answers `{gifts, position}`: the page's hooks refetch
  // at their first live signal anyway, so the position adds nothing here.
  list: async (list) => {
    const body = await call('GET', `/api/lists/${list}`);
    return Array.isArray(body) ? body : body.gifts;
  },
  add: (list, name, by) => call('POST', `/api/lists/${list}/gifts`, { name, by }),
  setBought: (list, id, bought, by) => call('PATCH', `/api/lists/${list}/gifts/${id}`, { bought, by }),
  remove: (list, id) => call('DELETE', `/api/lists/${list}/gifts/${id}`),
};

export const demo = {
  outage: () => call('POST', '/api/demo/outage'),
  restart: () => call('POST', '/api/demo/restart'),
};
