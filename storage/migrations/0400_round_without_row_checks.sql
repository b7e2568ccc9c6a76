-- A round writes a million period results and as many outbox rows in one statement. Their two
-- foreign keys cost a row lock on every participation and a lookup per row (14 s of a 60 s
-- round for 1,000,000 participations, measured with bench/evaluate.py), and they guard nothing
-- the round's own SQL does not already guarantee: results are selected from a join with
-- participations (which are ended, never deleted), and outbox rows from the very results the
-- same statement inserted. tests/evaluation check after every round that no row is orphaned.
alter table period_results drop constraint period_results_participation_id_fkey;
alter table outbox drop constraint outbox_period_result_id_fkey;
