-- Reading the audit log by action (the notification deliveries) without walking every
-- entry: newest first within an action.
CREATE INDEX audit_log_action ON audit_log (action, id DESC);
