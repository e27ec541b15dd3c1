-- The audit reports and the CSV export page by (region, seq).
CREATE INDEX audit_events_by_region_seq ON audit_events(region_id, seq);
