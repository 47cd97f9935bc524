// The popugs' web app: signing in, then one page per `#/path`, each shown only to the roles
// the API lets do what it offers.

import * as session from './session.js';
import { request } from './api.js';
import { h } from './dom.js';
import { wordsFor } from './words.js';
import { signInPage } from './pages/signin.js';
import { boardPage } from './pages/board.js';
import { trackerPage } from './pages/tracker.js';
import { dashboardPage } from './pages/dashboard.js';

// Each page for the roles the API lets do what it offers; the API refuses the others anyway.
const PAGES = [
  { path: '/', label: 'My board', roles: null, render: boardPage },
  { path: '/tracker', label: 'Tracker', roles: ['ADMIN', 'MANAGER'], render: trackerPage },
  { path: '/dashboard', label: 'Dashboard', roles: ['ADMIN', 'ACCOUNTANT'], render: dashboardPage },
];

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const who = document.getElementById('who');
const notice = document.getElementById('notice');

let me = null;
let shown = null;
let expiry = null;

let noticeTimer = null;

/** A short message at the bottom of the page, read out by screen readers; it goes by itself. */
function notify(text, kind = 'info') {
  notice.textContent = text;
  notice.dataset.kind = kind;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => {
    notice.textContent = '';
  }, kind === 'error' ? 10000 : 6000);
}

/** An error of any page: an expired or refused token brings the sign-in back. */
function fail(error) {
  if (error?.code === 'UNAUTHENTICATED') {
    signOut(wordsFor(error));
    return;
  }
  notify(wordsFor(error), 'error');
}

function signOut(message) {
  session.signOut();
  me = null;
  show(message);
}

function showChrome() {
  nav.replaceChildren(
    ...PAGES.filter((page) => !page.roles || page.roles.includes(me.role)).map((page) =>
      h('a', { href: `#${page.path}`, 'aria-current': currentPath() === page.path ? 'page' : false }, page.label),
    ),
  );
  who.replaceChildren(
    h('span', {}, `${me.name} (${me.role.toLowerCase()})`),
    h('button', { type: 'button', class: 'link', onclick: () => signOut() }, 'Sign out'),
  );
}

function currentPath() {
  return location.hash.replace(/^#/, '') || '/';
}

async function show(message) {
  shown?.abort();
  shown = new AbortController();
  const { signal } = shown;
  clearTimeout(expiry);
  if (!session.token()) {
    nav.replaceChildren();
    who.replaceChildren();
    signInPage(main, { message, onSignedIn: () => show() });
    return;
  }
  const expires = session.expiresAt();
  if (expires && expires <= new Date()) {
    signOut('Your sign-in has expired. Please sign in again.');
    return;
  }
  if (expires) {
    // Timers take at most 2^31 ms; a token that lives longer is checked again then.
    const wait = Math.min(expires - new Date(), 2 ** 31 - 1);
    expiry = setTimeout(() => show(), wait);
  }
  if (!me) {
    try {
      me = (await request('Me')).me;
    } catch (error) {
      if (error.code === 'UNAUTHENTICATED') {
        signOut(wordsFor(error));
      } else {
        main.replaceChildren(h('h1', {}, 'aTES'), h('p', { class: 'error', role: 'alert' }, wordsFor(error)));
      }
      return;
    }
  }
  showChrome();
  const page = PAGES.find((candidate) => candidate.path === currentPath());
  if (!page) {
    main.replaceChildren(h('h1', {}, 'Not found'), h('p', {}, 'There is no such page. ', h('a', { href: '#/' }, 'Go to my board.')));
    return;
  }
  if (page.roles && !page.roles.includes(me.role)) {
    main.replaceChildren(
      h('h1', {}, page.label),
      h('p', { class: 'error', role: 'alert' }, `This page is for ${page.roles.map((r) => r.toLowerCase()).join(' and ')} only. You are signed in as ${me.role.toLowerCase()}.`),
    );
    return;
  }
  await page.render(main, { me, signal, notify, fail });
}

// A token may come in the fragment at any time: on the first load, or into an open tab.
window.addEventListener('hashchange', () => {
  if (session.takeFromFragment()) me = null;
  show();
});
session.takeFromFragment();
show();
