// The tracker, for admins and managers: every task, filtered by status, assignee and text,
// paged; and "Shuffle open tasks", confirmed first, reporting what it did.

import { request } from '../api.js';
import { h, pager, price, table, time } from '../dom.js';
import { wordsFor } from '../words.js';

const PAGE = 25;

export async function trackerPage(main, { notify, fail }) {
  const status = h('select', { id: 'status', name: 'status' },
    h('option', { value: '' }, 'Any'),
    h('option', { value: 'OPEN' }, 'Open'),
    h('option', { value: 'DONE' }, 'Done'),
  );
  const assignee = h('select', { id: 'assignee', name: 'assignee' }, h('option', { value: '' }, 'Anyone'));
  const search = h('input', { id: 'search', name: 'search', type: 'search', maxlength: 100, autocomplete: 'off' });
  const results = h('div', { id: 'results', 'aria-live': 'polite' });
  const shuffled = h('p', { id: 'shuffled', role: 'status' });

  const show = async (paging = { first: PAGE }) => {
    const variables = {
      status: status.value || null,
      assignee: assignee.value || null,
      search: search.value.trim() || null,
      ...paging,
    };
    try {
      const { tasks } = await request('Tracker', variables);
      results.replaceChildren(
        h('p', {}, `${tasks.totalCount} ${tasks.totalCount === 1 ? 'task' : 'tasks'}`),
        table(
          'Tasks',
          ['Title', 'Key', 'Status', 'Assignee', 'Fee', 'Reward', 'Created'],
          tasks.nodes.map((task) => [
            task.title,
            task.jiraId ?? '',
            task.status.toLowerCase(),
            task.assignee.name,
            [price(task.assignFee, { debit: true }), 'num'],
            [price(task.reward), 'num'],
            time(task.createdAt),
          ]),
          'No task matches.',
        ),
        tasks.nodes.some((task) => task.assignFee === null)
          ? h('p', { class: 'hint' }, 'A task’s fee and reward show to its assignee, admins and accountants only (—).')
          : null,
        pager(tasks.pageInfo, PAGE, show, 'Pages of tasks'),
      );
    } catch (error) {
      fail(error);
    }
  };

  // Asking before a shuffle: it moves every open task at once.
  const confirm = h('div', { class: 'confirm', hidden: true, role: 'group', 'aria-labelledby': 'confirm-text' },
    h('p', { id: 'confirm-text' }, 'Draw every open task anew? Each draw charges its assignee a fee.'),
    h('button', { type: 'button', onclick: async () => {
      confirm.hidden = true;
      shuffled.textContent = 'Shuffling…';
      try {
        const { shuffleTasks } = await request('ShuffleTasks');
        // The list first, then the report: whoever reads the report finds the list it speaks of.
        await show();
        shuffled.textContent = `Shuffled: ${shuffleTasks.reassigned} reassigned, ${shuffleTasks.moved} moved to another popug.`;
      } catch (error) {
        shuffled.textContent = wordsFor(error);
      }
      ask.focus();
    } }, 'Yes, shuffle'),
    h('button', { type: 'button', class: 'secondary', onclick: () => { confirm.hidden = true; ask.focus(); } }, 'Cancel'),
  );
  const ask = h('button', { type: 'button', onclick: () => {
    confirm.hidden = false;
    confirm.querySelector('button').focus();
  } }, 'Shuffle open tasks');

  const filters = h('form', { class: 'filters', role: 'search', onsubmit: (event) => { event.preventDefault(); show(); } },
    h('label', { for: 'status' }, 'Status'), status,
    h('label', { for: 'assignee' }, 'Assignee'), assignee,
    h('label', { for: 'search' }, 'Title or key contains'), search,
    h('button', { type: 'submit' }, 'Filter'),
  );
  status.addEventListener('change', () => show());
  assignee.addEventListener('change', () => show());

  main.replaceChildren(h('h1', {}, 'Tracker'), h('div', { class: 'actions' }, ask, confirm, shuffled), filters, results);

  try {
    const { popugs } = await request('Popugs');
    assignee.append(...popugs.nodes.map((p) => h('option', { value: p.id }, `${p.name} (${p.role.toLowerCase()})`)));
  } catch (error) {
    notify(wordsFor(error), 'error');
  }
  await show();
}
