-- THE audience rule, defined once: who may see a thread. The group's current members
-- for the main timeline; for a 内緒話, its member set — of whom only current members of
-- the group count (removal from the group also deletes the thread_members rows, in the
-- same transaction; the join makes the rule hold even without that). Every access check
-- and every list of threads, messages, files, search hits and receipts reads this view;
-- `thread_members` is otherwise touched only by the membership writes.
CREATE VIEW thread_audience AS
SELECT t.id AS thread_id,
       t.group_id,
       g.region_id,
       m.user_id,
       m.role AS group_role,
       m.patient_side,
       g.archived_at
FROM threads t
JOIN groups g ON g.id = t.group_id
JOIN group_members m ON m.group_id = t.group_id
WHERE t.kind = 'main'
   OR EXISTS (SELECT 1 FROM thread_members tm WHERE tm.thread_id = t.id AND tm.user_id = m.user_id);
