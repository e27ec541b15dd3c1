-- Revocations are polled by every node (to close sockets of sessions ended elsewhere).
CREATE INDEX sessions_by_revoked_at ON sessions(revoked_at) WHERE revoked_at IS NOT NULL;
