DROP TABLE IF EXISTS changes;
ALTER TABLE directory_users DROP COLUMN IF EXISTS provisioned_at;
