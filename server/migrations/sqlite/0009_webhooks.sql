-- Webhooks of third-party apps (docs/integrations.md, "Webhooks"). A webhook belongs to
-- an API client; events reach it only when the client's app account may see them (the
-- thread_audience view), and go into its outbox in the same transaction as the change.
CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    api_client_id TEXT NOT NULL REFERENCES api_clients(id),
    -- Copied from the client, so the enqueue query of a change starts from its region.
    region_id TEXT NOT NULL REFERENCES regions(id),
    url TEXT NOT NULL,
    -- Subscribed event types, space-separated in a fixed order.
    events TEXT NOT NULL,
    -- The signing secret's 32 random bytes, wrapped by the KEK that wraps file data
    -- keys (bound to the webhook id): a stolen database alone cannot sign.
    secret_wrapped TEXT NOT NULL,
    secret_kek_id TEXT NOT NULL,
    active BIGINT NOT NULL DEFAULT 1,
    -- The last outbox position handed out: deliveries are numbered per webhook, in the
    -- order their transactions commit (the row lock serialises them).
    last_seq BIGINT NOT NULL DEFAULT 0,
    created_by TEXT NOT NULL REFERENCES users(id),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CONSTRAINT webhooks_active_check CHECK (active IN (0, 1))
);
CREATE INDEX webhooks_by_region ON webhooks(region_id, active);
CREATE INDEX webhooks_by_client ON webhooks(api_client_id, created_at);

-- The durable outbox: one row per (webhook, event), delivered in `seq` order, one in
-- flight per webhook. `lease_until` is the claim of the node sending it; a claim that
-- outlives its node (kill -9) expires and the row is sent again (at least once).
CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    webhook_id TEXT NOT NULL REFERENCES webhooks(id),
    seq BIGINT NOT NULL,
    -- The event's id: the `webhook-id` header and the body's `id`; the same for every
    -- webhook the event goes to and for every attempt and redelivery of it.
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    -- The thread whose audience admitted the event (for a group event, its main
    -- timeline); checked again before each attempt. NULL for test events.
    thread_id TEXT,
    -- The exact body that is signed and sent.
    payload TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_until BIGINT,
    last_status BIGINT,
    last_error TEXT,
    latency_ms BIGINT,
    redelivery_of TEXT,
    created_at BIGINT NOT NULL,
    delivered_at BIGINT,
    CONSTRAINT webhook_deliveries_status_check CHECK (status IN ('pending', 'delivered', 'dead')),
    UNIQUE (webhook_id, seq)
);
-- The worker's "next due per webhook": the lowest pending seq of each webhook.
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries(webhook_id, seq)
    WHERE status = 'pending';
-- The admin's lists: recent deliveries of a webhook, optionally by status.
CREATE INDEX webhook_deliveries_by_status ON webhook_deliveries(webhook_id, status, seq);
