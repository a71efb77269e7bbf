-- Telemetry hub schema (wire contract section 6). Safe to apply more than once.
--
-- Physical layout: readings are stored narrow, with integer keys for device and metric
-- (`reading`); the contract's text-keyed relations are views over it. See docs/storage.md.

-- Every device ever registered. A deleted device keeps its row (flagged `deleted`) so its
-- mark survives and a re-created id continues from it; a purge removes the row.
CREATE TABLE IF NOT EXISTS device_registry (
    key         integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          text NOT NULL UNIQUE,
    token_hash  bytea,
    labels      jsonb NOT NULL DEFAULT '{}',
    enabled     boolean NOT NULL DEFAULT true,
    deleted     boolean NOT NULL DEFAULT false,
    last_seq    bigint NOT NULL DEFAULT 0,
    session     bigint NOT NULL DEFAULT 0,
    last_seen   timestamptz,
    remote      text,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE OR REPLACE VIEW devices AS
    SELECT id, labels, enabled, last_seq, session, last_seen, remote, created_at
    FROM device_registry WHERE NOT deleted;

CREATE TABLE IF NOT EXISTS metric (
    key   integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name  text NOT NULL UNIQUE
);

-- One row per reading. value_type is the wire type: 1 f64, 2 i64, 3 bool, 4 string.
CREATE TABLE IF NOT EXISTS reading (
    device_key  integer NOT NULL,
    metric_key  integer NOT NULL,
    seq         bigint NOT NULL,
    ts          timestamptz NOT NULL,
    value_type  smallint NOT NULL,
    value       double precision,
    text_value  text
);
CREATE INDEX IF NOT EXISTS reading_device_ts ON reading (device_key, ts);

CREATE OR REPLACE VIEW telemetry AS
    SELECT d.id AS device_id, r.seq, m.name AS metric, r.ts, r.value, r.text_value
    FROM reading r
    JOIN device_registry d ON d.key = r.device_key
    JOIN metric m ON m.key = r.metric_key;

-- Frames that could not be stored, kept whole.
CREATE TABLE IF NOT EXISTS rejected_frames (
    device_id    text NOT NULL,
    seq          bigint,
    reason       text NOT NULL,
    payload      bytea NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS rejected_frames_device ON rejected_frames (device_id, received_at);

-- Commands to devices and their state.
CREATE TABLE IF NOT EXISTS commands (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    device_id   text NOT NULL,
    name        text NOT NULL,
    params      jsonb NOT NULL DEFAULT '{}',
    status      text NOT NULL DEFAULT 'queued',
    result      jsonb,
    error       text,
    expires_at  timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS commands_device_created ON commands (device_id, created_at);

-- A running hub keeps devices in memory; it learns of changes made elsewhere
-- (`hub devices add` while it runs) through this notification.
CREATE OR REPLACE FUNCTION hub_device_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('hub_devices', COALESCE(NEW.id, OLD.id));
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER device_registry_changed
    AFTER INSERT OR DELETE OR UPDATE OF token_hash, enabled, deleted, labels ON device_registry
    FOR EACH ROW EXECUTE FUNCTION hub_device_changed();
