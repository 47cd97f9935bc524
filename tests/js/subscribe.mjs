// Subscribes to the caller's own task assignments with the graphql-ws client library, the way
// a web front-end does, and prints the first event as one JSON line.
// usage: node subscribe.mjs ws://host:port/graphql/ws TOKEN
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const [url, token] = process.argv.slice(2);
const giveUp = setTimeout(() => {
  console.error('no event within 15 s');
  process.exit(2);
}, 15000);

const client = createClient({
  url,
  webSocketImpl: WebSocket,
  connectionParams: { Authorization: `Bearer ${token}` },
  retryAttempts: 0,
  on: { connected: () => console.log('connected') },
});

client.subscribe(
  { query: 'subscription { taskAssigned { seq fee task { id title } assignee { id } } }' },
  {
    next: (value) => {
      console.log(JSON.stringify(value));
      clearTimeout(giveUp);
      client.dispose();
      process.exit(0);
    },
    error: (error) => {
      console.error('error', JSON.stringify(error));
      process.exit(1);
    },
    complete: () => {},
  },
);
