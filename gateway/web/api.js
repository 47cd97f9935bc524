// The app's one way to the gateway: GraphQL over HTTP for queries and mutations, and
// graphql-transport-ws (the graphql-ws client) for subscriptions. Every document lives in
// ./graphql/NAME.graphql and is sent under its operation's name.

import * as session from './session.js';

/** A refusal or failure, with the `extensions.code` the app words it by. */
export class ApiError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

const documents = new Map();

/** The text of ./graphql/NAME.graphql, fetched once (the file is cached with the app). */
export function documentOf(name) {
  if (!documents.has(name)) {
    const url = new URL(`./graphql/${name}.graphql`, import.meta.url);
    documents.set(
      name,
      fetch(url).then((response) => {
        if (!response.ok) throw new ApiError('INTERNAL', `the app has no document ${name}`);
        return response.text();
      }),
    );
  }
  return documents.get(name);
}

/**
 * Runs operation NAME with VARIABLES and resolves to its `data`; rejects with an ApiError.
 * A mutation may carry an idempotency key, so that sending it twice has one effect.
 */
export async function request(name, variables = {}, { idempotencyKey } = {}) {
  const headers = {
    'content-type': 'application/json',
    accept: 'application/graphql-response+json, application/json',
  };
  const token = session.token();
  if (token) headers.authorization = `Bearer ${token}`;
  if (idempotencyKey) headers['idempotency-key'] = idempotencyKey;
  const body = JSON.stringify({ query: await documentOf(name), operationName: name, variables });
  let response;
  try {
    response = await fetch('/graphql', { method: 'POST', headers, body });
  } catch {
    throw new ApiError('NETWORK', 'the gateway cannot be reached');
  }
  let answer;
  try {
    answer = await response.json();
  } catch {
    throw new ApiError(statusCode(response.status), `the gateway answered ${response.status}`);
  }
  const error = answer.errors?.[0];
  if (error) {
    throw new ApiError(error.extensions?.code ?? statusCode(response.status), error.message);
  }
  return answer.data;
}

function statusCode(status) {
  if (status === 429) return 'RATE_LIMITED';
  if (status === 503) return 'SERVICE_UNAVAILABLE';
  if (status === 401) return 'UNAUTHENTICATED';
  return 'INTERNAL';
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Follows subscription NAME for as long as STOP is not aborted. Each event goes to ONEVENT with
 * the event's `seq`; when the socket drops (a restart, the network), it reconnects with a
 * growing pause and resumes with `after` set to the last `seq` seen, so nothing is missed or
 * heard twice. ONSTATUS hears 'live', 'reconnecting' and, with an ApiError, 'refused'.
 */
export async function follow(name, variables, field, { onEvent, onStatus, stop }) {
  const query = await documentOf(name);
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/graphql/ws`;
  let after = variables.after ?? null;
  let pause = 250;
  while (!stop.aborted) {
    const client = globalThis.graphqlWs.createClient({
      url,
      connectionParams: { Authorization: `Bearer ${session.token()}` },
      retryAttempts: 0,
      lazy: true,
      on: {
        connected: () => {
          pause = 250;
          onStatus('live');
        },
      },
    });
    const ended = await new Promise((resolve) => {
      const dispose = client.subscribe(
        { query, operationName: name, variables: { ...variables, after } },
        {
          next: (message) => {
            const error = message.errors?.[0];
            if (error) {
              resolve(new ApiError(error.extensions?.code ?? 'INTERNAL', error.message));
              return;
            }
            const event = message.data[field];
            after = event.seq;
            onEvent(event);
          },
          error: (error) => resolve(closeReason(error)),
          complete: () => resolve(null),
        },
      );
      stop.addEventListener('abort', () => {
        dispose();
        resolve(null);
      });
    });
    client.dispose();
    if (stop.aborted) return;
    if (ended instanceof ApiError && ended.code !== 'CONFLICT') {
      // A refusal will not get better by trying again; a fall-behind (CONFLICT) will.
      onStatus('refused', ended);
      return;
    }
    onStatus('reconnecting');
    await sleep(pause);
    pause = Math.min(pause * 2, 5000);
  }
}

/** What a closed socket means: an expired token (4403) is a refusal, the rest a drop. */
function closeReason(error) {
  if (error && typeof error === 'object' && error.code === 4403) {
    return new ApiError('UNAUTHENTICATED', error.reason || 'the token is not valid');
  }
  return null;
}
