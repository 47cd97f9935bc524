-- Accounting: task prices, accounts, the common audit log, and what each event consumer has
-- handled. Amounts are integers in the company's minor unit.

-- Drawn once per task when accounting handles its TaskCreated, never changed.
create table task_prices (
    task_id    text primary key,
    assign_fee bigint not null check (assign_fee between 10 and 20),
    reward     bigint not null check (reward between 20 and 40),
    priced_at  bigint not null
);

-- One account per popug; a balance may go negative and carries over.
create table accounts (
    popug_id text primary key,
    balance  bigint not null
);

-- The common audit log: every business event with the money it moved (signed), the balance
-- after it and when the log received it. Append-only, like the outbox.
create table audit_log (
    seq           bigint generated always as identity primary key,
    event_id      text not null unique,
    kind          text not null check (kind in ('TASK_CREATED', 'TASK_ASSIGNED', 'TASK_COMPLETED', 'PAYOUT')),
    amount        bigint not null,
    balance_after bigint not null,
    task_id       text,
    popug_id      text not null,
    logged_at     bigint not null
);

create index audit_log_by_popug on audit_log (popug_id, logged_at, seq);
create index audit_log_by_task on audit_log (task_id, seq);
create index audit_log_by_time on audit_log (logged_at, seq);

create trigger audit_log_append_only
    before update or delete on audit_log
    for each row execute function refuse_change();

-- At-least-once delivery, exactly-once effect: a consumer records each event it handled in the
-- transaction of the effect, and how far through the outbox it is.
create table handled_events (
    consumer text not null,
    event_id text not null,
    primary key (consumer, event_id)
);

create table consumer_offsets (
    consumer text primary key,
    last_seq bigint not null
);
