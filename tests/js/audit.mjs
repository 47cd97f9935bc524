// The graphql-http server audit (the GraphQL-over-HTTP specification's MUSTs and SHOULDs)
// against a running gateway: prints one JSON line per audit that is not "ok", then a summary
// line, and exits non-zero when any audit warned or failed.
//
// node audit.mjs http://127.0.0.1:PORT/graphql TOKEN
import { serverAudits } from 'graphql-http';

const [url, token] = process.argv.slice(2);
const authorized = (input, init = {}) => {
  const headers = new Headers(init.headers);
  headers.set('authorization', `Bearer ${token}`);
  return fetch(input, { ...init, headers });
};

let bad = 0;
let ok = 0;
for (const audit of serverAudits({ url, fetchFn: authorized })) {
  const result = await audit.fn();
  if (result.status === 'ok') {
    ok += 1;
    continue;
  }
  if (result.status !== 'notice') bad += 1;
  let body = '';
  try {
    body = await result.response.text();
  } catch {
    // The body was read by the audit already.
  }
  console.log(JSON.stringify({
    id: result.id,
    name: result.name,
    status: result.status,
    reason: result.reason,
    httpStatus: result.response.status,
    body: body.slice(0, 300),
  }));
}
console.log(JSON.stringify({ ok, bad }));
process.exit(bad === 0 ? 0 : 1);
