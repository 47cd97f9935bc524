-- Idempotency-Key: each mutation a popug sent with a key, the fingerprint of its request
-- (document, operation name, variables) and, once it ran, the answer it got, so that a retry
-- gets that answer again instead of a second effect. `claimed_at` never changes: a task made
-- under the key takes its id from it. `running_since` is the lease of the run in progress; a
-- run that died leaves it old, and a retry may take it over. Rows are swept once expired.
create table idempotency_keys (
    popug_id        text not null,
    idempotency_key text not null,
    fingerprint     text not null,
    claimed_at      bigint not null,
    running_since   bigint not null,
    answer_status   integer,
    answer_body     text,
    request_error   integer not null default 0,
    expires_at      bigint not null,
    primary key (popug_id, idempotency_key)
);

create index idempotency_keys_expiry on idempotency_keys (expires_at);
