DROP TABLE erasures_pending;
