// Building the page: elements made with text nodes only, so that nothing a popug typed (a
// title, a description) is ever read as HTML.

/** `h('li', { class: 'task' }, 'text', child)`: attributes starting with `on` are listeners. */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith('on')) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

/** Money as the ledger keeps it: whole units, signed. */
export function money(amount) {
  if (amount === null || amount === undefined) return '…';
  return amount > 0 ? `+${amount}` : String(amount);
}

/**
 * A price in a list of others' tasks: null when it is another popug's money, which only the
 * task's assignee and bookkeepers see; shown then as a dash. A fee is shown as a debit.
 */
export function price(amount, { debit = false } = {}) {
  if (amount === null || amount === undefined) return '—';
  return money(debit ? -amount : amount);
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });

export function time(iso) {
  return timeFormat.format(new Date(iso));
}

/**
 * Previous / next buttons for a connection's PAGEINFO; GO receives the arguments of the page
 * asked for (`{ last, before }` or `{ first, after }`).
 */
export function pager(pageInfo, size, go, label) {
  return h(
    'nav',
    { class: 'pager', 'aria-label': label },
    h('button', { type: 'button', disabled: !pageInfo.hasPreviousPage, onclick: () => go({ last: size, before: pageInfo.startCursor }) }, '← Previous'),
    h('button', { type: 'button', disabled: !pageInfo.hasNextPage, onclick: () => go({ first: size, after: pageInfo.endCursor }) }, 'Next →'),
  );
}

/** A table with a header row of COLUMNS and ROWS of cells (text, or `[text, 'num']`). */
export function table(caption, columns, rows, empty) {
  const body = rows.length
    ? rows.map((cells) => h('tr', {}, cells.map((cell) => (Array.isArray(cell) ? h('td', { class: cell[1] }, cell[0]) : cell instanceof Node ? h('td', {}, cell) : h('td', {}, cell ?? '')))))
    : [h('tr', {}, h('td', { colspan: columns.length, class: 'empty' }, empty))];
  return h(
    'table',
    {},
    h('caption', { class: 'sr' }, caption),
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, body),
  );
}
