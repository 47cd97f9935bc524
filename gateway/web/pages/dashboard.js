// The accountants' dashboard, for admins and accountants: the company's days as a chart over
// a chosen range, the most expensive tasks (admins), the audit log with every filter, and the
// payouts with "close the day" and, for admins, a retry of a failed payout.

import { request } from '../api.js';
import { h, money, pager, table, time } from '../dom.js';
import { wordsFor } from '../words.js';

const LOG_PAGE = 50;
const PAYOUT_PAGE = 25;
const KINDS = ['TASK_CREATED', 'TASK_ASSIGNED', 'TASK_COMPLETED', 'PAYOUT'];

/** `YYYY-MM-DD` of the day DAYS after D (a local date). */
function isoDay(d, days = 0) {
  const shifted = new Date(d.getFullYear(), d.getMonth(), d.getDate() + days);
  const pad = (n) => String(n).padStart(2, '0');
  return `${shifted.getFullYear()}-${pad(shifted.getMonth() + 1)}-${pad(shifted.getDate())}`;
}

/** Seconds since the epoch of a `YYYY-MM-DD` day, as uPlot's time axis counts. */
const epoch = (day) => Date.parse(`${day}T00:00:00Z`) / 1000;

/** A uPlot chart in HOST, sized to it; replaced when drawn again. */
function chart(host, title, data, series, scales = {}) {
  host.replaceChildren();
  const width = Math.max(320, host.clientWidth || 720);
  const plot = new globalThis.uPlot(
    {
      title,
      width,
      height: 280,
      scales: { x: { time: true }, ...scales },
      series: [{ label: 'Day' }, ...series],
      axes: [{}, { scale: series[0].scale ?? 'y' }, ...(scales.popugs ? [{ scale: 'popugs', side: 1, grid: { show: false } }] : [])],
    },
    data,
    host,
  );
  return plot;
}

export async function dashboardPage(main, { me, notify, fail }) {
  // The company's calendar, not the browser's: the days close by it.
  let today = new Date();
  try {
    const [year, month, day] = (await request('Today')).today.split('-').map(Number);
    today = new Date(year, month - 1, day);
  } catch (error) {
    fail(error);
  }
  const from = h('input', { id: 'from', name: 'from', type: 'date', value: isoDay(today, -13), required: true });
  const to = h('input', { id: 'to', name: 'to', type: 'date', value: isoDay(today), required: true });
  const daysChart = h('div', { id: 'days-chart', class: 'chart', role: 'img', 'aria-label': 'Fees, rewards and management earnings per day' });
  const daysTable = h('div');

  const showDays = async () => {
    try {
      const { dailySummaries: days } = await request('Days', { from: from.value, to: to.value });
      chart(
        daysChart,
        'The company per day',
        [
          days.map((d) => epoch(d.day)),
          days.map((d) => d.feesDebited),
          days.map((d) => d.rewardsCredited),
          days.map((d) => d.managementEarnings),
          days.map((d) => d.negativeBalanceCount),
        ],
        [
          { label: 'Fees', stroke: '#0b5cad', width: 2 },
          { label: 'Rewards', stroke: '#1b6e3a', width: 2 },
          { label: 'Management earnings', stroke: '#7a3e9d', width: 2 },
          { label: 'Popugs below zero', stroke: '#a4161a', width: 2, dash: [6, 4], scale: 'popugs' },
        ],
        { popugs: { auto: true } },
      );
      daysTable.replaceChildren(
        table(
          'The company per day',
          ['Day', 'Fees', 'Rewards', 'Earnings', 'Below zero', 'Paid out', 'Closed'],
          days.map((d) => [
            d.day,
            [String(d.feesDebited), 'num'],
            [String(d.rewardsCredited), 'num'],
            [money(d.managementEarnings), 'num'],
            [String(d.negativeBalanceCount), 'num'],
            [`${d.paidTotal} (${d.payoutCount} ${d.payoutCount === 1 ? 'popug' : 'popugs'})`, 'num'],
            d.closed ? 'closed' : 'open',
          ]),
          'No day in this range.',
        ),
      );
    } catch (error) {
      fail(error);
    }
  };

  // The audit log.
  const popug = h('select', { id: 'log-popug', name: 'popug' }, h('option', { value: '' }, 'Everyone'));
  const task = h('input', { id: 'log-task', name: 'task', autocomplete: 'off', placeholder: 'a task id' });
  const kind = h('select', { id: 'log-kind', name: 'kind' }, h('option', { value: '' }, 'Every kind'), KINDS.map((k) => h('option', { value: k }, k.toLowerCase().replace('_', ' '))));
  const logFrom = h('input', { id: 'log-from', name: 'from', type: 'datetime-local' });
  const logTo = h('input', { id: 'log-to', name: 'to', type: 'datetime-local' });
  const log = h('div', { id: 'log', 'aria-live': 'polite' });
  const showLog = async (paging = { first: LOG_PAGE }) => {
    const filter = {
      popugId: popug.value || null,
      taskId: task.value.trim() || null,
      kinds: kind.value ? [kind.value] : null,
      from: logFrom.value ? new Date(logFrom.value).toISOString() : null,
      to: logTo.value ? new Date(logTo.value).toISOString() : null,
    };
    try {
      const { auditLog } = await request('AuditLog', { filter, ...paging });
      log.replaceChildren(
        h('p', {}, `${auditLog.totalCount} ${auditLog.totalCount === 1 ? 'entry' : 'entries'}`),
        table(
          'Audit log',
          ['#', 'When', 'Popug', 'What', 'Task', 'Amount', 'Balance'],
          auditLog.nodes.map((e) => [
            [String(e.seq), 'num'],
            `${e.loggedAt.slice(0, 10)} ${time(e.loggedAt)}`,
            e.popug.name,
            e.kind.toLowerCase().replace('_', ' '),
            e.task?.title ?? '',
            [money(e.amount), 'num'],
            [String(e.balanceAfter), 'num'],
          ]),
          'No entry matches.',
        ),
        pager(auditLog.pageInfo, LOG_PAGE, showLog, 'Pages of the audit log'),
      );
    } catch (error) {
      fail(error);
    }
  };

  // Payouts, and closing a day.
  const payoutStatus = h('select', { id: 'payout-status', name: 'status' }, h('option', { value: '' }, 'Any'), ['PENDING', 'PAID', 'FAILED'].map((s) => h('option', { value: s }, s.toLowerCase())));
  const payouts = h('div', { id: 'payouts', 'aria-live': 'polite' });
  const showPayouts = async (paging = { first: PAYOUT_PAGE }) => {
    try {
      const { payouts: page } = await request('CompanyPayouts', { status: payoutStatus.value || null, ...paging });
      payouts.replaceChildren(
        table(
          'Payouts',
          ['Day', 'Popug', 'Amount', 'Status', 'Attempts', 'Action'],
          page.nodes.map((p) => [
            p.day,
            p.popug.name,
            [String(p.amount), 'num'],
            p.lastError ? `${p.status.toLowerCase()}: ${p.lastError}` : p.status.toLowerCase(),
            [String(p.attempts), 'num'],
            p.status === 'FAILED' && me.role === 'ADMIN'
              ? h('button', { type: 'button', onclick: () => retry(p) }, 'Retry', h('span', { class: 'sr' }, ` ${p.popug.name}'s payout of ${p.day}`))
              : '',
          ]),
          'No payout.',
        ),
        pager(page.pageInfo, PAYOUT_PAGE, showPayouts, 'Pages of payouts'),
      );
    } catch (error) {
      fail(error);
    }
  };
  const retry = async (payout) => {
    try {
      await request('RetryPayout', { id: payout.id });
      notify(`${payout.popug.name}'s payout of ${payout.day} is sent again.`);
      await showPayouts();
    } catch (error) {
      fail(error);
    }
  };
  const closeDay = h('input', { id: 'close-day', name: 'day', type: 'date', value: isoDay(today, -1), required: true });
  const closed = h('p', { id: 'closed', role: 'status' });
  const closeForm = h('form', { class: 'inline', onsubmit: async (event) => {
    event.preventDefault();
    closed.textContent = 'Closing…';
    try {
      const { closeDay: result } = await request('CloseDay', { day: closeDay.value });
      const record = result.day;
      closed.textContent = record
        ? `${record.day} is closed: ${record.paidTotal} paid out to ${record.payoutCount} ${record.payoutCount === 1 ? 'popug' : 'popugs'}, ${record.negativeBalanceCount} below zero.${result.closedNow.length > 1 ? ` ${result.closedNow.length} days closed now.` : ''}`
        : `Nothing happened up to ${closeDay.value}: there was nothing to close.`;
      await Promise.all([showDays(), showPayouts()]);
    } catch (error) {
      closed.textContent = wordsFor(error);
    }
  } },
    h('label', { for: 'close-day' }, 'Day'), closeDay, h('button', { type: 'submit' }, 'Close the day'));

  const sections = [
    h('h1', {}, 'Dashboard'),
    h('section', { 'aria-labelledby': 'days' },
      h('h2', { id: 'days' }, 'The company per day'),
      h('form', { class: 'inline', onsubmit: (event) => { event.preventDefault(); showDays(); showTop?.(); } },
        h('label', { for: 'from' }, 'From'), from, h('label', { for: 'to' }, 'To'), to, h('button', { type: 'submit' }, 'Show')),
      daysChart, daysTable),
  ];

  let showTop = null;
  if (me.role === 'ADMIN') {
    const period = h('select', { id: 'period', name: 'period' }, ['DAY', 'WEEK', 'MONTH'].map((p) => h('option', { value: p }, p.toLowerCase())));
    const topChart = h('div', { id: 'top-chart', class: 'chart', role: 'img', 'aria-label': 'The highest reward of each period' });
    const topTable = h('div');
    showTop = async () => {
      try {
        const { analytics } = await request('TopTasks', { period: period.value, from: from.value, to: to.value });
        const periods = [...analytics.mostExpensiveTasks].reverse();
        chart(topChart, 'The most expensive task', [periods.map((p) => epoch(p.from)), periods.map((p) => p.task?.reward ?? null)], [
          { label: 'Reward', stroke: '#0b5cad', width: 2, points: { show: true, size: 8 } },
        ]);
        topTable.replaceChildren(table(
          'The most expensive task per period',
          ['Period', 'Task', 'Completed by', 'Reward'],
          analytics.mostExpensiveTasks.map((p) => [
            p.from === p.to ? p.from : `${p.from} – ${p.to}`,
            p.task ? `${p.task.task?.title ?? ''}${p.task.task?.jiraId ? ` (${p.task.task.jiraId})` : ''}` : 'none completed',
            p.task?.completedBy.name ?? '',
            [p.task ? String(p.task.reward) : '', 'num'],
          ]),
          'No period in this range.',
        ));
      } catch (error) {
        fail(error);
      }
    };
    period.addEventListener('change', () => showTop());
    sections.push(h('section', { 'aria-labelledby': 'top' },
      h('h2', { id: 'top' }, 'The most expensive tasks'),
      h('p', { class: 'hint' }, 'Over the range chosen above.'),
      h('label', { for: 'period' }, 'Per '), period, topChart, topTable));
  }

  sections.push(
    h('section', { 'aria-labelledby': 'payouts-heading' },
      h('h2', { id: 'payouts-heading' }, 'Payouts'),
      closeForm, closed,
      h('label', { for: 'payout-status' }, 'Status '), payoutStatus, payouts),
    h('section', { 'aria-labelledby': 'log-heading' },
      h('h2', { id: 'log-heading' }, 'Audit log'),
      h('form', { class: 'filters', role: 'search', onsubmit: (event) => { event.preventDefault(); showLog(); } },
        h('label', { for: 'log-popug' }, 'Popug'), popug,
        h('label', { for: 'log-task' }, 'Task'), task,
        h('label', { for: 'log-kind' }, 'Kind'), kind,
        h('label', { for: 'log-from' }, 'From'), logFrom,
        h('label', { for: 'log-to' }, 'Before'), logTo,
        h('button', { type: 'submit' }, 'Filter')),
      log),
  );
  main.replaceChildren(...sections);
  payoutStatus.addEventListener('change', () => showPayouts());

  try {
    const { popugs } = await request('Popugs');
    popug.append(...popugs.nodes.map((p) => h('option', { value: p.id }, p.name)));
  } catch (error) {
    notify(wordsFor(error), 'error');
  }
  await Promise.all([showDays(), showTop?.(), showPayouts(), showLog()]);
}
