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

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });

export function time(iso) {
  return timeFormat.format(new Date(iso));
}
