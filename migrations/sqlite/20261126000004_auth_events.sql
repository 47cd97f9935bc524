-- Popug Data Updated from the auth service, and the messages that could not be handled.

-- Every auth event the replica has handled, by its id: the same event delivered twice (over
-- HTTP, NATS, or both) finds its row here and changes nothing. `outcome` says what it did:
-- APPLIED, or STALE when the popug had already changed since the event's time.
create table auth_events (
    id          text primary key,
    event_type  text not null,
    popug_id    text not null,
    occurred_at bigint not null,
    received_at bigint not null,
    outcome     text not null check (outcome in ('APPLIED', 'STALE'))
);

create index auth_events_by_popug on auth_events (popug_id, occurred_at);

-- Messages from the broker that were refused (unknown type or version, invalid payload): parked
-- here for an operator to read, so that one bad message never blocks the stream behind it.
create table dead_letters (
    seq         integer primary key autoincrement,
    source      text not null,
    subject     text not null,
    payload     text not null,
    reason      text not null,
    received_at bigint not null
);

