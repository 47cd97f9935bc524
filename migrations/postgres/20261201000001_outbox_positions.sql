-- Consumers follow the outbox by position: the writing transaction's id, then `seq`.
--
-- Identities are handed out before commit, in no commit order, so a consumer that followed
-- `seq` alone could pass a row whose transaction commits later. Ordering by transaction id
-- first, and reading only rows of transactions older than every transaction still running
-- (`pg_snapshot_xmin(pg_current_snapshot())`), gives an order that never changes once read,
-- without making writers commit one after another. Rows written before this migration keep
-- xid 0 and so come first, in `seq` order, as they always did.
alter table outbox add column xid bigint not null default 0;
alter table outbox alter column xid set default (cast(cast(pg_current_xact_id() as text) as bigint));
create index outbox_by_position on outbox (xid, seq);

alter table consumer_offsets add column last_xid bigint not null default 0;

-- Read paths: each list a client can ask for has an index that serves its filter and its
-- order, so a page costs the rows it returns.
create index audit_log_by_popug_seq on audit_log (popug_id, seq);
create index audit_log_by_kind on audit_log (kind, seq);
create index tasks_by_assignee_newest on tasks (assignee_id, id);
create index popugs_by_role on popugs (role, id);
