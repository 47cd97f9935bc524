// My board: my open tasks, live; completing one; creating a task; my balance, today's log
// with its running balance, and my payouts.

import { follow, request } from '../api.js';
import { h, money, time } from '../dom.js';
import { wordsFor } from '../words.js';

const KINDS = {
  TASK_CREATED: 'Created',
  TASK_ASSIGNED: 'Assigned (fee)',
  TASK_COMPLETED: 'Completed (reward)',
  PAYOUT: 'Paid out',
};

/** A fresh idempotency key: one per task the form creates, however often it is sent. */
function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, '0')).join('');
}

export async function boardPage(main, { me, signal, notify, fail }) {
  const tasks = new Map();
  // Events heard while the list is being (re)read wait here, then apply on top of it.
  let pending = null;

  const status = h('span', { class: 'live', role: 'status' }, 'Connecting…');
  const balance = h('strong', { id: 'balance' }, '…');
  const list = h('ul', { id: 'tasks', class: 'tasks', 'aria-label': 'My open tasks' });
  const log = h('tbody');
  const payouts = h('tbody');

  const showTasks = () => {
    const items = [...tasks.values()].map((task) =>
      h(
        'li',
        { class: 'task', 'data-id': task.id },
        h('h3', {}, task.title),
        task.jiraId ? h('span', { class: 'key' }, task.jiraId) : null,
        task.description ? h('p', {}, task.description) : null,
        h('p', { class: 'price' }, `Fee ${money(-task.assignFee)} · reward ${money(task.reward)}`),
        h('button', { type: 'button', onclick: () => complete(task) }, 'Complete', h('span', { class: 'sr' }, ` “${task.title}”`)),
      ),
    );
    list.replaceChildren(...items);
    if (items.length === 0) list.replaceChildren(h('li', { class: 'empty' }, 'Nothing open. Enjoy the sun.'));
  };

  const apply = (event) => {
    if (pending) {
      pending.push(event);
      return;
    }
    if (event.assignee.id === me.id && event.task.status === 'OPEN') {
      tasks.set(event.task.id, event.task);
    } else {
      tasks.delete(event.task.id);
    }
    showTasks();
    refreshMoney();
  };

  const readTasks = async () => {
    pending ??= [];
    try {
      const data = await request('Board');
      tasks.clear();
      for (const task of data.myTasks.nodes) tasks.set(task.id, task);
    } finally {
      const heard = pending;
      pending = null;
      heard.forEach(apply);
      showTasks();
    }
  };

  let moneyTimer = null;
  const refreshMoney = () => {
    clearTimeout(moneyTimer);
    moneyTimer = setTimeout(() => readMoney().catch(fail), 150);
  };
  const readMoney = async () => {
    const data = await request('Money');
    balance.textContent = String(data.account.balance);
    log.replaceChildren(
      ...data.account.log.nodes.map((entry) =>
        h(
          'tr',
          {},
          h('td', {}, time(entry.loggedAt)),
          h('td', {}, KINDS[entry.kind] ?? entry.kind),
          h('td', {}, entry.task?.title ?? ''),
          h('td', { class: 'num' }, money(entry.amount)),
          h('td', { class: 'num' }, String(entry.balanceAfter)),
        ),
      ),
    );
    payouts.replaceChildren(
      ...data.payouts.nodes.map((payout) =>
        h(
          'tr',
          {},
          h('td', {}, payout.day),
          h('td', { class: 'num' }, String(payout.amount)),
          h('td', {}, payout.status.toLowerCase()),
        ),
      ),
    );
  };

  const complete = async (task) => {
    try {
      const done = await request('CompleteTask', { id: task.id });
      tasks.delete(task.id);
      showTasks();
      notify(`Done: “${task.title}”. Reward ${money(done.completeTask.reward)}.`);
      refreshMoney();
    } catch (error) {
      fail(error);
      await readTasks().catch(fail);
    }
  };

  // The form keeps what was typed until the task is made. A request sent again unchanged (a
  // double click, a retry after the network failed) goes under the same idempotency key, so it
  // makes one task; anything else typed is another request, under a key of its own.
  let key = null;
  let keyed = null;
  const title = h('input', { id: 'title', name: 'title', required: true, 'aria-describedby': 'title-rule', autocomplete: 'off' });
  const jira = h('input', { id: 'jira', name: 'jiraId', autocomplete: 'off', placeholder: 'UBERPOP-42' });
  const description = h('textarea', { id: 'description', name: 'description', rows: 2 });
  const formError = h('p', { class: 'error', role: 'alert' });
  const form = h(
    'form',
    {
      class: 'card',
      'aria-labelledby': 'new-task',
      onsubmit: async (event) => {
        event.preventDefault();
        formError.textContent = '';
        const input = { title: title.value, description: description.value };
        if (jira.value.trim()) input.jiraId = jira.value.trim();
        if (JSON.stringify(input) !== keyed) {
          key = newKey();
          keyed = JSON.stringify(input);
        }
        try {
          const made = await request('CreateTask', { input }, { idempotencyKey: key });
          notify(`Created “${made.createTask.title}”, assigned to ${made.createTask.assignee.name}.`);
          form.reset();
          keyed = null;
        } catch (error) {
          formError.textContent = wordsFor(error);
          if (error.code === 'UNAUTHENTICATED') fail(error);
          title.focus();
        }
      },
    },
    h('h2', { id: 'new-task' }, 'New task'),
    h('label', { for: 'title' }, 'Title'),
    title,
    h('p', { id: 'title-rule', class: 'hint' }, 'No [ or ] in the title: the tracker key goes in its own field below.'),
    h('label', { for: 'jira' }, 'Tracker key (optional)'),
    jira,
    h('label', { for: 'description' }, 'Description (optional)'),
    description,
    formError,
    h('button', { type: 'submit' }, 'Create task'),
  );

  main.replaceChildren(
    h('h1', {}, 'My board ', status),
    h('p', { class: 'balance' }, 'Balance: ', balance),
    h('section', { 'aria-labelledby': 'open-tasks' }, h('h2', { id: 'open-tasks' }, 'My open tasks'), list),
    form,
    h(
      'section',
      { 'aria-labelledby': 'today' },
      h('h2', { id: 'today' }, 'Today'),
      h('table', {}, h('thead', {}, h('tr', {}, ['Time', 'What', 'Task', 'Amount', 'Balance'].map((c) => h('th', { scope: 'col' }, c)))), log),
    ),
    h(
      'section',
      { 'aria-labelledby': 'paid' },
      h('h2', { id: 'paid' }, 'Payouts'),
      h('table', {}, h('thead', {}, h('tr', {}, ['Day', 'Amount', 'Status'].map((c) => h('th', { scope: 'col' }, c)))), payouts),
    ),
  );

  // Listen first, then read once the socket is up: whatever is assigned in between is heard,
  // and applied on top of what was read. Should the socket not come up, read anyway.
  let first = true;
  pending = [];
  const readOnce = () => {
    if (!first) return;
    first = false;
    readTasks().catch(fail);
  };
  const fallback = setTimeout(readOnce, 2000);
  signal.addEventListener('abort', () => clearTimeout(fallback));
  follow('MyAssignments', { me: me.id }, 'taskAssigned', {
    stop: signal,
    onEvent: apply,
    onStatus: (state, error) => {
      status.textContent = { live: 'Live', reconnecting: 'Reconnecting…', refused: 'Not live' }[state];
      status.dataset.state = state;
      if (state === 'refused') fail(error);
      if (state !== 'live') return;
      if (first) {
        clearTimeout(fallback);
        readOnce();
      } else {
        // Back after a drop: the subscription resumes from the last event it heard; the
        // money may have moved meanwhile too.
        refreshMoney();
      }
    },
  });
  await readMoney().catch(fail);
}
