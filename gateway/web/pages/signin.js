// Signing in: a token from the auth service, pasted here or handed over in `/#token=…`.

import * as session from '../session.js';
import { h } from '../dom.js';

export function signInPage(main, { message, onSignedIn }) {
  const field = h('textarea', {
    id: 'token', name: 'token', rows: 4, required: true, autocomplete: 'off', spellcheck: 'false',
  });
  const form = h(
    'form',
    {
      class: 'card',
      onsubmit: (event) => {
        event.preventDefault();
        session.signIn(field.value);
        onSignedIn();
      },
    },
    h('label', { for: 'token' }, 'Your token from the auth service'),
    field,
    h('button', { type: 'submit' }, 'Sign in'),
  );
  main.replaceChildren(
    h('h1', {}, 'Sign in'),
    message ? h('p', { class: 'error', role: 'alert' }, message) : null,
    h('p', {}, 'The auth service signs you in and sends you back here. You can also paste the token it gave you.'),
    form,
  );
  field.focus();
}
