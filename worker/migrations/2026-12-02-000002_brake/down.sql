DROP INDEX IF EXISTS changes_deprovisions;
DROP TABLE IF EXISTS held_events;
DROP TABLE IF EXISTS deprovision_brakes;
