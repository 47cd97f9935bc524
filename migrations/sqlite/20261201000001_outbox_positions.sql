-- Consumers follow the outbox by position: (xid, seq). PostgreSQL records the writing
-- transaction there; SQLite has one writer at a time, so `seq` is already commit order and
-- xid stays 0. The same SQL serves both.
alter table outbox add column xid integer not null default 0;
create index outbox_by_position on outbox (xid, seq);

alter table consumer_offsets add column last_xid integer not null default 0;

-- Read paths: each list a client can ask for has an index that serves its filter and its
-- order, so a page costs the rows it returns.
create index audit_log_by_popug_seq on audit_log (popug_id, seq);
create index audit_log_by_kind on audit_log (kind, seq);
create index tasks_by_assignee_newest on tasks (assignee_id, id);
create index popugs_by_role on popugs (role, id);
