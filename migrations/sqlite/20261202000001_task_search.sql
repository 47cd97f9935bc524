-- `tasks(search:)`: tasks whose title or tracker key contains a piece of text, in any
-- position and any case. An FTS5 index of the trigrams of both columns serves a search of
-- three characters or more (a phrase of trigrams matches the text wherever it stands); the
-- triggers keep it in step with `tasks`, whose rows it points at by rowid.
create virtual table tasks_search using fts5 (
    title,
    jira_id,
    content = 'tasks',
    content_rowid = 'rowid',
    tokenize = 'trigram'
);

insert into tasks_search (rowid, title, jira_id) select rowid, title, jira_id from tasks;

create trigger tasks_search_insert after insert on tasks begin
    insert into tasks_search (rowid, title, jira_id) values (new.rowid, new.title, new.jira_id);
end;

create trigger tasks_search_update after update of title, jira_id on tasks begin
    insert into tasks_search (tasks_search, rowid, title, jira_id)
        values ('delete', old.rowid, old.title, old.jira_id);
    insert into tasks_search (rowid, title, jira_id) values (new.rowid, new.title, new.jira_id);
end;

create trigger tasks_search_delete after delete on tasks begin
    insert into tasks_search (tasks_search, rowid, title, jira_id)
        values ('delete', old.rowid, old.title, old.jira_id);
end;
