-- Make Payment: day closes, payouts and the mail that tells popugs about them.

-- A business day whose positive balances have all been paid out. Written last, after every
-- payout of the day: a day without a row here is still open, whatever was paid of it.
create table day_closes (
    day            text primary key,
    closed_at      bigint not null,
    payout_count   bigint not null,
    paid_total     bigint not null,
    -- Popugs whose balance was below zero at the day's end.
    negative_count bigint not null
);

-- One payout per popug and business day, whatever happens: the unique key is the guard. The
-- id is also the PayoutMade event's and the payment system's idempotency key. The money has
-- moved when the row exists (the PAYOUT log entry commits with it); `status` tracks the
-- payment system, which is told afterwards from this queue.
create table payouts (
    id              text primary key,
    popug_id        text not null,
    day             text not null,
    amount          bigint not null check (amount > 0),
    earned          bigint not null,
    status          text not null check (status in ('PENDING', 'PAID', 'FAILED')),
    attempts        bigint not null default 0,
    next_attempt_at bigint not null,
    lease_until     bigint,
    last_error      text,
    created_at      bigint not null,
    settled_at      bigint,
    settled_by      text,
    unique (popug_id, day)
);

create index payouts_due on payouts (status, next_attempt_at);
create index payouts_by_day on payouts (day, popug_id);

-- Outgoing mail: sent over SMTP when it is configured, else kept here as the mailbox admins
-- read. One message per payout.
create table mail (
    id              text primary key,
    payout_id       text unique,
    popug_id        text not null,
    subject         text not null,
    body            text not null,
    status          text not null check (status in ('PENDING', 'SENT', 'FAILED')),
    address         text,
    attempts        bigint not null default 0,
    next_attempt_at bigint not null,
    lease_until     bigint,
    last_error      text,
    created_at      bigint not null,
    sent_at         bigint,
    sent_via        text
);

create index mail_due on mail (status, next_attempt_at);
create index mail_by_popug on mail (popug_id, created_at);

create index audit_log_completions on audit_log (kind, logged_at, seq);
