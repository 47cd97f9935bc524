-- Dead letters an operator replays once the cause is mended: when, and with what outcome. A
-- replayed letter leaves the list of those waiting, which the partial index serves newest
-- first.
alter table dead_letters add column replayed_at bigint;
alter table dead_letters add column outcome text;

create index dead_letters_waiting on dead_letters (seq) where replayed_at is null;
