-- The task tracker: the popug replica, tasks, and the outbox of the events they produce.
-- Every instant is stored as microseconds since the Unix epoch (bigint): the gateway runs the
-- same SQL on PostgreSQL and SQLite, and both order and compare integers alike.

-- The task domain's replica of the auth service's popugs. `changed_at` is when the replica last
-- changed (the `iat` of the token, or the time of the auth event, that changed it): an older
-- token or event never overwrites a newer state.
create table popugs (
    id             text primary key,
    name           text not null,
    email          text,
    role           text not null,
    changed_at     bigint not null,
    deactivated_at bigint
);

-- Assignment draws from the active popugs that are neither admin nor manager.
create index popugs_assignable on popugs (role) where deactivated_at is null;

create table tasks (
    id           text primary key,
    title        text not null,
    jira_id      text,
    description  text not null,
    status       text not null check (status in ('OPEN', 'DONE')),
    assignee_id  text not null references popugs (id),
    created_by   text not null references popugs (id),
    created_at   bigint not null,
    completed_at bigint
);

create index tasks_by_status on tasks (status, id);
create index tasks_by_assignee on tasks (assignee_id, status, id);

-- Events written in the same transaction as the change that causes them; consumers follow
-- `seq`. Rows are never updated or deleted.
create table outbox (
    seq          bigint generated always as identity primary key,
    id           text not null unique,
    event_type   text not null,
    version      bigint not null,
    aggregate_id text not null,
    payload      text not null,
    occurred_at  bigint not null
);

create index outbox_by_aggregate on outbox (aggregate_id, seq);

-- Refuses any UPDATE or DELETE of the table it guards.
create function refuse_change() returns trigger language plpgsql as $$
begin
    raise exception '% is append-only', tg_table_name;
end;
$$;

create trigger outbox_append_only
    before update or delete on outbox
    for each row execute function refuse_change();
