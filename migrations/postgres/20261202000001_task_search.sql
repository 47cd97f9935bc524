-- `tasks(search:)`: tasks whose title or tracker key contains a piece of text, in any
-- position and any case (ILIKE). A trigram index on each column serves it.
create extension if not exists pg_trgm;

create index tasks_title_trigrams on tasks using gin (title gin_trgm_ops);
create index tasks_jira_trigrams on tasks using gin (jira_id gin_trgm_ops);
