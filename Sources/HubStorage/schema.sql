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

-- In a cluster (`hub serve --cluster`), the node that claimed the device's current session
-- (docs/cluster.md); NULL when no node holds it. Single-node hubs leave it NULL.
ALTER TABLE device_registry ADD COLUMN IF NOT EXISTS owner text;

CREATE OR REPLACE VIEW devices AS
    SELECT id, labels, enabled, last_seq, session, last_seen, remote, created_at
    FROM device_registry WHERE NOT deleted;

CREATE TABLE IF NOT EXISTS metric (
    key   integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name  text NOT NULL UNIQUE
);

-- Which metric names each device has reported: the hub holds them in memory to enforce
-- --max-metrics-per-device and --max-metrics (contract section 7), and adds a pair with
-- the batch that first stores it. A database made before this table gets the pairs its
-- rollups know (every folded or pending reading has one).
DO $$
BEGIN
    IF to_regclass('device_metric') IS NULL THEN
        CREATE TABLE device_metric (
            device_key  integer NOT NULL,
            metric_key  integer NOT NULL,
            PRIMARY KEY (device_key, metric_key)
        );
        IF to_regclass('rollup_1h') IS NOT NULL THEN
            INSERT INTO device_metric SELECT DISTINCT device_key, metric_key FROM rollup_1h ON CONFLICT DO NOTHING;
            INSERT INTO device_metric SELECT DISTINCT device_key, metric_key FROM rollup_delta ON CONFLICT DO NOTHING;
        END IF;
    END IF;
END
$$;

-- Sums that cannot fail. PostgreSQL's float `+` and `sum()` raise 22003 when two finite
-- values add up past the largest double; these answer NaN instead (an overflowed sum,
-- reported as null), so one device's extreme values never stop a rollup fold or a query.
-- Overflow needs both addends of one sign and the larger at least 2^1023; then
-- max - larger is exact (Sterbenz), and the test is exact.
CREATE OR REPLACE FUNCTION hub_add(a double precision, b double precision) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN a IS NULL THEN b
        WHEN b IS NULL THEN a
        WHEN (a > 0) = (b > 0) AND greatest(abs(a), abs(b)) >= 8.98846567431157954e307
            AND least(abs(a), abs(b)) > 1.7976931348623157e308 - greatest(abs(a), abs(b)) THEN 'NaN'::double precision
        ELSE a + b
    END
$$;
CREATE OR REPLACE AGGREGATE hub_sum(double precision) (SFUNC = hub_add, STYPE = double precision, PARALLEL = SAFE);

-- One row per reading. value_type is the wire type: 1 f64, 2 i64, 3 bool, 4 string.
-- Partitioned by reading time: the hub creates one partition per span (a day by
-- default) ahead of time and drops whole partitions for retention. A reading whose time
-- falls in no partition lands in reading_default, and the hub moves it into a partition
-- of its own later (docs/storage.md).
DO $$
BEGIN
    IF to_regclass('reading') IS NOT NULL
        AND (SELECT relkind FROM pg_class WHERE oid = to_regclass('reading')) = 'r' THEN
        -- A database made before partitioning: keep every row. They go to the default
        -- partition here; the hub moves them into time partitions in the background.
        ALTER TABLE reading RENAME TO reading_unpartitioned;
        ALTER INDEX IF EXISTS reading_device_ts RENAME TO reading_unpartitioned_device_ts;
    END IF;
    IF to_regclass('reading') IS NULL THEN
        CREATE TABLE reading (
            device_key  integer NOT NULL,
            metric_key  integer NOT NULL,
            seq         bigint NOT NULL,
            ts          timestamptz NOT NULL,
            value_type  smallint NOT NULL,
            value       double precision,
            text_value  text
        ) PARTITION BY RANGE (ts);
    END IF;
END
$$;
CREATE TABLE IF NOT EXISTS reading_default PARTITION OF reading DEFAULT;
-- Partition upkeep looks for default rows by time; far-off readings stay here for good.
CREATE INDEX IF NOT EXISTS reading_default_ts ON reading_default (ts);
-- By device and time. The readings of a frame share the key, so B-tree deduplication keeps
-- the index at about 17 bytes a reading (docs/storage.md weighs a metric column in it).
CREATE INDEX IF NOT EXISTS reading_device_ts ON reading (device_key, ts);

-- Per-minute and per-hour aggregates per device and metric, for bucketed queries over long
-- ranges (docs/storage.md). `count` counts every reading, `value_count` those with a
-- number (f64, i64, bool); first and last are by (ts, seq) and may be strings.
CREATE TABLE IF NOT EXISTS rollup_1m (
    device_key   integer NOT NULL,
    metric_key   integer NOT NULL,
    bucket       timestamptz NOT NULL,
    count        bigint NOT NULL,
    value_count  bigint NOT NULL,
    sum          double precision,
    min          double precision,
    max          double precision,
    first_ts     timestamptz NOT NULL,
    first_seq    bigint NOT NULL,
    first_type   smallint NOT NULL,
    first_value  double precision,
    first_text   text,
    last_ts      timestamptz NOT NULL,
    last_seq     bigint NOT NULL,
    last_type    smallint NOT NULL,
    last_value   double precision,
    last_text    text,
    PRIMARY KEY (device_key, metric_key, bucket)
);
-- The lowest and highest seq of each bucket's readings: replay by seq finds the readings
-- after a seq through them, with no index on seq in `reading` (RollupFolder, docs/storage.md).
-- NULL in rows folded before these columns: unknown, taken as 0 and 2^63-1.
ALTER TABLE rollup_1m ADD COLUMN IF NOT EXISTS min_seq bigint, ADD COLUMN IF NOT EXISTS max_seq bigint;
CREATE TABLE IF NOT EXISTS rollup_1h (LIKE rollup_1m INCLUDING ALL);
ALTER TABLE rollup_1h ADD COLUMN IF NOT EXISTS min_seq bigint, ADD COLUMN IF NOT EXISTS max_seq bigint;
-- The first or last reading of a bucket, taken whole when rollup rows are merged.
DO $$
BEGIN
    IF to_regtype('rollup_edge') IS NULL THEN
        CREATE TYPE rollup_edge AS (ts timestamptz, seq bigint, type smallint, value double precision, text text);
    END IF;
END
$$;
-- Whether the hour keeps minute rows in rollup_1m. A sparse hour (at most 60 readings of
-- its metric) has none: its readings answer minute buckets, and are no more rows. Rows of
-- a database made before this column had minute rows for every hour.
ALTER TABLE rollup_1h ADD COLUMN IF NOT EXISTS minutes boolean NOT NULL DEFAULT true;
CREATE INDEX IF NOT EXISTS rollup_1h_sparse ON rollup_1h (bucket) WHERE NOT minutes;
-- Hours before this time always keep minute rows: retention built them before it dropped
-- the readings, and late readings for them get minute rows straight away.
CREATE TABLE IF NOT EXISTS rollup_horizon (
    only_row        boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    minutes_before  timestamptz NOT NULL DEFAULT '-infinity'
);
INSERT INTO rollup_horizon DEFAULT VALUES ON CONFLICT DO NOTHING;
-- A sparse hour's minutes, as parallel arrays with one element per minute that has
-- readings: the minute within the hour (0-59), its count, value_count, sum, min and max.
-- In a minute of one reading, value_count, min and max are NULL: they follow from its sum.
-- Minute buckets of a sparse hour come from here (except `last`, from its readings).
-- NULL for hours that keep minute rows. Sparse hours folded before these columns existed
-- get them at start, from their readings (rollup_horizon.minute_arrays_missing).
ALTER TABLE rollup_horizon ADD COLUMN IF NOT EXISTS minute_arrays_missing boolean NOT NULL DEFAULT false;
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_attribute WHERE attrelid = 'rollup_1h'::regclass AND attname = 'm_minute') THEN
        ALTER TABLE rollup_1h
            ADD COLUMN m_minute smallint[],
            ADD COLUMN m_count integer[],
            ADD COLUMN m_value_count integer[],
            ADD COLUMN m_sum double precision[],
            ADD COLUMN m_min double precision[],
            ADD COLUMN m_max double precision[];
        UPDATE rollup_horizon SET minute_arrays_missing = EXISTS (SELECT FROM rollup_1h WHERE NOT minutes);
    END IF;
END
$$;
-- Minute aggregates of each ingest batch, committed with its readings; folded into the
-- rollups every second. Queries read them too, so rollups are never behind.
CREATE TABLE IF NOT EXISTS rollup_delta (LIKE rollup_1m);
ALTER TABLE rollup_delta ADD COLUMN IF NOT EXISTS min_seq bigint, ADD COLUMN IF NOT EXISTS max_seq bigint;
CREATE INDEX IF NOT EXISTS rollup_delta_device ON rollup_delta (device_key, bucket);
-- A queue: every row is deleted within seconds. Vacuum it often and at full speed, so the
-- space of folded rows is reused rather than read past.
ALTER TABLE rollup_delta SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 100000,
    autovacuum_vacuum_cost_delay = 0);
-- A delta the fold could not take even one at a time, set aside with the error so the fold
-- goes on (RollupFolder.foldRound). Expected to stay empty.
CREATE TABLE IF NOT EXISTS rollup_delta_quarantine (LIKE rollup_delta);
ALTER TABLE rollup_delta_quarantine ADD COLUMN IF NOT EXISTS quarantined_at timestamptz;
ALTER TABLE rollup_delta_quarantine ADD COLUMN IF NOT EXISTS error text;
-- Readings committed whose minute deltas a writer still holds in memory: one row per
-- ingest batch, with per device the seq and time range of its readings in that batch (a
-- device whose readings in a batch lie more than an hour apart has a range per cluster).
-- A writer aggregates the deltas of its batches and writes them once a second, deleting
-- these rows in the same transaction (docs/storage.md). While it runs, its connection
-- holds the advisory lock (x'68756270', writer); once the lock is free (the writer's
-- connection is gone: a crash, kill -9, a lost database connection), the fold rebuilds
-- the deltas of the writer's rows from their readings.
CREATE SEQUENCE IF NOT EXISTS rollup_writer AS integer CYCLE;
CREATE TABLE IF NOT EXISTS rollup_pending (
    writer      integer NOT NULL,
    batch       bigint NOT NULL,
    device_key  integer[] NOT NULL,
    seq_lo      bigint[] NOT NULL,
    seq_hi      bigint[] NOT NULL,
    ts_lo       timestamptz[] NOT NULL,
    ts_hi       timestamptz[] NOT NULL,
    PRIMARY KEY (writer, batch)
);
ALTER TABLE rollup_pending SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0);
-- The ranges of rollup_pending, one row per (batch, device range).
CREATE OR REPLACE VIEW rollup_pending_range AS
    SELECT p.writer, p.batch, u.device_key, u.seq_lo, u.seq_hi, u.ts_lo, u.ts_hi
    FROM rollup_pending p, unnest(p.device_key, p.seq_lo, p.seq_hi, p.ts_lo, p.ts_hi) AS u(device_key, seq_lo, seq_hi, ts_lo, ts_hi);
-- Those readings as one-reading minute deltas (the columns of rollup_delta, then writer).
CREATE OR REPLACE VIEW rollup_unflushed AS
    SELECT r.device_key, r.metric_key, date_bin('1 minute', r.ts, timestamptz 'epoch') AS bucket,
        1::bigint AS count, (r.value IS NOT NULL)::int::bigint AS value_count, r.value AS sum, r.value AS min, r.value AS max,
        r.ts AS first_ts, r.seq AS first_seq, r.value_type AS first_type, r.value AS first_value, r.text_value AS first_text,
        r.ts AS last_ts, r.seq AS last_seq, r.value_type AS last_type, r.value AS last_value, r.text_value AS last_text,
        r.seq AS min_seq, r.seq AS max_seq, p.writer
    FROM rollup_pending_range p
    JOIN reading r ON r.device_key = p.device_key AND r.ts >= p.ts_lo AND r.ts <= p.ts_hi
        AND r.seq >= p.seq_lo AND r.seq <= p.seq_hi;
-- Every minute delta not folded yet: written ones and those still held by a writer.
-- Queries read the rollups together with this, in one snapshot, so they count every
-- committed reading once.
CREATE OR REPLACE VIEW rollup_unfolded AS
    SELECT * FROM rollup_delta
    UNION ALL
    SELECT device_key, metric_key, bucket, count, value_count, sum, min, max, first_ts, first_seq, first_type, first_value,
        first_text, last_ts, last_seq, last_type, last_value, last_text, min_seq, max_seq
    FROM rollup_unflushed;

CREATE OR REPLACE VIEW telemetry AS
    SELECT d.id AS device_id, r.seq, m.name AS metric, r.ts, r.value, r.text_value
    FROM reading r
    JOIN device_registry d ON d.key = r.device_key
    JOIN metric m ON m.key = r.metric_key;

-- The rollups as people read them (Grafana, psql): one row per device, metric and hour
-- or minute, with every reading counted, the deltas not folded yet (rollup_unfolded)
-- included. `avg` is over the readings with a number (f64, i64, bool as 0/1), as
-- `sum / value_count`. Buckets are aligned to the epoch (UTC hours), as the REST buckets
-- are. They outlive the raw readings.
CREATE OR REPLACE VIEW telemetry_hourly AS
    SELECT d.id AS device_id, m.name AS metric, x.bucket,
           sum(x.count)::bigint AS count, sum(x.value_count)::bigint AS value_count,
           sum(x.sum) AS sum, min(x.min) AS min, max(x.max) AS max,
           sum(x.sum) / nullif(sum(x.value_count), 0) AS avg
    FROM (
        SELECT device_key, metric_key, bucket, count, value_count, sum, min, max FROM rollup_1h
        UNION ALL
        SELECT device_key, metric_key, date_bin('1 hour', bucket, timestamptz 'epoch'), count, value_count, sum, min, max
        FROM rollup_unfolded
    ) x
    JOIN device_registry d ON d.key = x.device_key
    JOIN metric m ON m.key = x.metric_key
    GROUP BY d.id, m.name, x.bucket;
-- Minutes: rollup_1m for hours that keep minute rows, the minute arrays of sparse hours
-- (a minute of one reading keeps only its sum there: its value_count, min and max follow).
CREATE OR REPLACE VIEW telemetry_minutely AS
    SELECT d.id AS device_id, m.name AS metric, x.bucket,
           sum(x.count)::bigint AS count, sum(x.value_count)::bigint AS value_count,
           sum(x.sum) AS sum, min(x.min) AS min, max(x.max) AS max,
           sum(x.sum) / nullif(sum(x.value_count), 0) AS avg
    FROM (
        SELECT device_key, metric_key, bucket, count, value_count, sum, min, max FROM rollup_1m
        UNION ALL
        SELECT h.device_key, h.metric_key, h.bucket + make_interval(mins => a.minute), a.count,
               coalesce(a.value_count, CASE WHEN a.sum IS NULL THEN 0 ELSE 1 END),
               a.sum, coalesce(a.min, a.sum), coalesce(a.max, a.sum)
        FROM rollup_1h h,
             unnest(h.m_minute, h.m_count, h.m_value_count, h.m_sum, h.m_min, h.m_max)
                 AS a(minute, count, value_count, sum, min, max)
        WHERE NOT h.minutes
        UNION ALL
        SELECT device_key, metric_key, bucket, count, value_count, sum, min, max FROM rollup_unfolded
    ) x
    JOIN device_registry d ON d.key = x.device_key
    JOIN metric m ON m.key = x.metric_key
    GROUP BY d.id, m.name, x.bucket;

-- Frames that could not be stored, kept whole.
CREATE TABLE IF NOT EXISTS rejected_frames (
    device_id    text NOT NULL,
    seq          bigint,
    reason       text NOT NULL,
    payload      bytea NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS rejected_frames_device ON rejected_frames (device_id, received_at);
-- The fleet summary's "rejected in the last hour".
CREATE INDEX IF NOT EXISTS rejected_frames_received ON rejected_frames (received_at);

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
-- The fleet summary's pending commands: few rows, however long the history.
CREATE INDEX IF NOT EXISTS commands_pending ON commands (status) WHERE status IN ('queued', 'sent', 'delivered');

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

-- Last, once the views point at the partitioned table: rows of a database made before
-- partitioning move over (see reading above).
DO $$
BEGIN
    IF to_regclass('reading_unpartitioned') IS NOT NULL THEN
        INSERT INTO reading SELECT * FROM reading_unpartitioned;
        -- That version kept no rollups: the fold builds them from one minute delta per
        -- device, metric and minute, as it does for new readings.
        INSERT INTO rollup_delta
        SELECT device_key, metric_key, bucket, count, value_count, sum, min, max,
            (f).ts, (f).seq, (f).type, (f).value, (f).text, (l).ts, (l).seq, (l).type, (l).value, (l).text, min_seq, max_seq
        FROM (
            SELECT device_key, metric_key, date_bin('1 minute', ts, 'epoch') AS bucket, min(seq) AS min_seq, max(seq) AS max_seq,
                count(*) AS count, count(value) AS value_count, hub_sum(value) AS sum, min(value) AS min, max(value) AS max,
                (array_agg((ts, seq, value_type, value, text_value)::rollup_edge ORDER BY ts, seq))[1] AS f,
                (array_agg((ts, seq, value_type, value, text_value)::rollup_edge ORDER BY ts DESC, seq DESC))[1] AS l
            FROM reading_unpartitioned GROUP BY 1, 2, 3
        ) minutes;
        DROP TABLE reading_unpartitioned;
    END IF;
END
$$;
