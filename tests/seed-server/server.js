'use strict';

// A WebSocket server written the way the seed documents write theirs
// (shared/seeds 000 and 004): `?token=` auth closing 4001, topics with
// subscribe/unsubscribe, ping/pong, events broadcast as-is with no `seq`, and
// other JSON messages a Herald client must pass through as raw messages.
// Herald's interop tests run their client and CLI against it.
//
// Usage: node server.js [--port N]   (prints "listening <port>" when ready)

const http = require('node:http');
const { WebSocketServer, WebSocket } = require('ws');

const portArg = process.argv.indexOf('--port');
const port = portArg >= 0 ? Number(process.argv[portArg + 1]) : 0;

const subscriptions = new Map(); // topic -> Set<WebSocket>

function broadcast(topic, event) {
  const text = JSON.stringify(event);
  for (const ws of subscriptions.get(topic) || []) {
    if (ws.readyState === WebSocket.OPEN) ws.send(text);
  }
}

const server = http.createServer((req, res) => {
  // A backend announcing a change: POST /publish with the event as the body.
  if (req.method === 'POST' && req.url === '/publish') {
    let body = '';
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', () => {
      const event = JSON.parse(body);
      broadcast(event.topic, event);
      res.writeHead(204).end();
    });
    return;
  }
  res.writeHead(404).end();
});

const wss = new WebSocketServer({ server });

wss.on('connection', (ws, req) => {
  const token = new URL(req.url, 'http://localhost').searchParams.get('token');
  if (!token || token === 'bad') {
    ws.close(4001, 'Unauthorized');
    return;
  }
  const topics = new Set();
  ws.send(JSON.stringify({ type: 'connected', userId: token }));
  ws.send(JSON.stringify({ type: 'notification', message: `welcome ${token}` }));

  ws.on('message', (data) => {
    let msg;
    try {
      msg = JSON.parse(data.toString());
    } catch {
      ws.send(JSON.stringify({ type: 'error', code: 400, message: 'malformed JSON' }));
      return;
    }
    switch (msg.type) {
      case 'subscribe':
        for (const topic of msg.topics) {
          if (!subscriptions.has(topic)) subscriptions.set(topic, new Set());
          subscriptions.get(topic).add(ws);
          topics.add(topic);
        }
        break;
      case 'unsubscribe':
        for (const topic of msg.topics) {
          subscriptions.get(topic)?.delete(ws);
          topics.delete(topic);
        }
        break;
      case 'ping':
        ws.send(JSON.stringify({ type: 'pong' }));
        break;
      case 'publish':
        broadcast(msg.topic, { topic: msg.topic, event: msg.event, data: { ...msg.data, user_id: token } });
        ws.send(JSON.stringify({ type: 'ack', id: msg.id }));
        break;
      default:
        ws.send(JSON.stringify({ type: 'error', code: 400, message: 'unknown message type' }));
    }
  });

  ws.on('close', () => {
    for (const topic of topics) subscriptions.get(topic)?.delete(ws);
  });
});

server.listen(port, '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});

process.on('SIGTERM', () => process.exit(0));
