ALTER TABLE change_relay DROP COLUMN pruned_through;
