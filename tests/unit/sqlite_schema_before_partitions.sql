-- The local index schema as it was before data partitions (dicom_core/storage/local/schema.py
-- DDL and AFTER_UPGRADES at commit d979488), for tests/unit/test_sqlite_upgrade.py.

CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
-- A random name given to the database when it is created: metadata versions (ETags) start
-- with it, so a re-created or restored database, whose watermarks start again, never answers
-- 304 to an ETag of another database's content.
CREATE TABLE IF NOT EXISTS database_identity (id TEXT NOT NULL);

CREATE TABLE IF NOT EXISTS instance (
    watermark INTEGER PRIMARY KEY AUTOINCREMENT,
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    sop_uid TEXT NOT NULL,
    status INTEGER NOT NULL,
    original_watermark INTEGER,
    sop_class_uid TEXT,
    transfer_syntax_uid TEXT,
    blob_key TEXT NOT NULL DEFAULT '',
    file_size INTEGER,
    number_of_frames INTEGER,
    frames BLOB,
    metadata BLOB,
    patient_name TEXT,
    patient_id TEXT,
    patient_birth_date TEXT,
    accession_number TEXT,
    referring_physician_name TEXT,
    study_date TEXT,
    study_time TEXT,
    study_description TEXT,
    patient_name_norm TEXT,
    referring_physician_name_norm TEXT,
    patient_id_fold TEXT,
    accession_number_fold TEXT,
    study_description_fold TEXT,
    modality TEXT,
    pps_start_date TEXT,
    manufacturer_model_name TEXT,
    modality_fold TEXT,
    manufacturer_model_name_fold TEXT,
    instance_number INTEGER,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (study_uid, series_uid, sop_uid, status)
);
CREATE INDEX IF NOT EXISTS instance_by_series
    ON instance (study_uid, series_uid, status, watermark);
CREATE INDEX IF NOT EXISTS instance_by_sop ON instance (sop_uid);

CREATE TABLE IF NOT EXISTS series (
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    latest_watermark INTEGER NOT NULL,
    modality TEXT,
    pps_start_date TEXT,
    manufacturer_model_name TEXT,
    modality_fold TEXT,
    manufacturer_model_name_fold TEXT,
    num_instances INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (study_uid, series_uid)
);
CREATE INDEX IF NOT EXISTS series_by_uid ON series (series_uid);
CREATE INDEX IF NOT EXISTS series_by_latest ON series (latest_watermark);
CREATE INDEX IF NOT EXISTS series_by_modality ON series (modality);
CREATE INDEX IF NOT EXISTS series_by_modality_key ON series (modality_fold, study_uid);

CREATE TABLE IF NOT EXISTS study (
    study_uid TEXT PRIMARY KEY,
    latest_watermark INTEGER NOT NULL,
    patient_name TEXT,
    patient_id TEXT,
    patient_birth_date TEXT,
    accession_number TEXT,
    referring_physician_name TEXT,
    study_date TEXT,
    study_time TEXT,
    study_description TEXT,
    patient_name_norm TEXT,
    referring_physician_name_norm TEXT,
    patient_id_fold TEXT,
    accession_number_fold TEXT,
    study_description_fold TEXT,
    modalities TEXT,
    num_series INTEGER NOT NULL,
    num_instances INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    expires_at TEXT
);
CREATE INDEX IF NOT EXISTS study_by_latest ON study (latest_watermark);
CREATE INDEX IF NOT EXISTS study_by_patient_id ON study (patient_id);
CREATE INDEX IF NOT EXISTS study_by_date ON study (study_date);
CREATE INDEX IF NOT EXISTS study_by_accession ON study (accession_number);
CREATE INDEX IF NOT EXISTS study_by_patient_id_key ON study (patient_id_fold);
CREATE INDEX IF NOT EXISTS study_by_accession_key ON study (accession_number_fold);
CREATE INDEX IF NOT EXISTS study_by_patient_name_key ON study (patient_name_norm);

-- QIDO wildcard and fuzzy matching on the study's text keys, as a trigram index (FTS5) kept in
-- step with the study summaries by triggers. Each column holds ' ' || key, so a fuzzy word can
-- be found at the start of any name component ('* word*'). sqlite_query.py uses it only to
-- narrow the candidates; the exact GLOB on the study row still decides.
CREATE VIRTUAL TABLE IF NOT EXISTS study_text USING fts5(
    patient_name, referring_physician_name, patient_id, accession_number, study_description,
    tokenize = 'trigram case_sensitive 1'
);
CREATE TRIGGER IF NOT EXISTS study_text_insert AFTER INSERT ON study BEGIN
    INSERT INTO study_text (rowid, patient_name, referring_physician_name, patient_id, accession_number, study_description) VALUES (new.rowid, ' ' || new.patient_name_norm, ' ' || new.referring_physician_name_norm, ' ' || new.patient_id_fold, ' ' || new.accession_number_fold, ' ' || new.study_description_fold);
END;
CREATE TRIGGER IF NOT EXISTS study_text_update
    AFTER UPDATE OF patient_name_norm, referring_physician_name_norm, patient_id_fold, accession_number_fold, study_description_fold ON study
    WHEN old.patient_name_norm IS NOT new.patient_name_norm OR old.referring_physician_name_norm IS NOT new.referring_physician_name_norm OR old.patient_id_fold IS NOT new.patient_id_fold OR old.accession_number_fold IS NOT new.accession_number_fold OR old.study_description_fold IS NOT new.study_description_fold
BEGIN
    UPDATE study_text SET patient_name = ' ' || new.patient_name_norm, referring_physician_name = ' ' || new.referring_physician_name_norm, patient_id = ' ' || new.patient_id_fold, accession_number = ' ' || new.accession_number_fold, study_description = ' ' || new.study_description_fold WHERE rowid = old.rowid;
END;
CREATE TRIGGER IF NOT EXISTS study_text_delete AFTER DELETE ON study BEGIN
    DELETE FROM study_text WHERE rowid = old.rowid;
END;

-- QIDO results mostly carry the default and "includefield=all" attributes; this keeps just
-- those of each stored instance's DICOM JSON (a few hundred bytes instead of kilobytes), so
-- a page of 100 results parses little. Written by trigger when the metadata is.
CREATE TABLE IF NOT EXISTS instance_summary (
    watermark INTEGER PRIMARY KEY,
    doc TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS instance_summary_write AFTER UPDATE OF metadata ON instance
    WHEN new.metadata IS NOT NULL
BEGIN
    INSERT OR REPLACE INTO instance_summary (watermark, doc)
    SELECT new.watermark, json_group_object(key, json(value))
    FROM json_each(CAST(new.metadata AS TEXT)) WHERE key IN ('00080005', '00080016', '00080018', '00080020', '00080021', '00080030', '00080031', '00080050', '00080056', '00080060', '00080063', '00080090', '00080201', '00081030', '00081032', '0008103E', '00081060', '00081080', '00081090', '00081110', '00100010', '00100020', '00100030', '00100040', '00101010', '00101020', '00101030', '00102180', '001021B0', '0020000D', '0020000E', '00200010', '00200011', '00200013', '00200060', '00280008', '00280010', '00280011', '00280100', '00400244', '00400245', '00400275');
END;
CREATE TRIGGER IF NOT EXISTS instance_summary_delete AFTER DELETE ON instance BEGIN
    DELETE FROM instance_summary WHERE watermark = old.watermark;
END;

CREATE TABLE IF NOT EXISTS extended_query_tag (
    tag_key INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL UNIQUE,
    vr TEXT NOT NULL,
    private_creator TEXT,
    level TEXT NOT NULL,
    status TEXT NOT NULL,
    query_status TEXT NOT NULL,
    error_count INTEGER NOT NULL DEFAULT 0,
    operation_id TEXT,
    created_at TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS eqt_value (
    tag_key INTEGER NOT NULL,
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL DEFAULT '',
    sop_uid TEXT NOT NULL DEFAULT '',
    watermark INTEGER NOT NULL,
    text_value TEXT,
    num_value REAL,
    norm_value TEXT,
    PRIMARY KEY (tag_key, study_uid, series_uid, sop_uid)
);
CREATE INDEX IF NOT EXISTS eqt_value_by_key ON eqt_value (tag_key, norm_value);
CREATE INDEX IF NOT EXISTS eqt_value_by_num ON eqt_value (tag_key, num_value);
CREATE INDEX IF NOT EXISTS eqt_value_by_entity ON eqt_value (study_uid, series_uid, sop_uid);
-- A deleted instance takes its extended-query-tag values with it, and so does the last
-- instance of a series (series-level values) or of a study (study-level values). A replaced
-- version (PUT) loses its row here too; the store indexes the new version after its commit.
CREATE TRIGGER IF NOT EXISTS eqt_value_instance_delete AFTER DELETE ON instance
    WHEN old.status = 1
BEGIN
    DELETE FROM eqt_value WHERE study_uid = old.study_uid AND series_uid = old.series_uid
        AND sop_uid = old.sop_uid;
    DELETE FROM eqt_value WHERE study_uid = old.study_uid AND series_uid = old.series_uid
        AND sop_uid = '' AND NOT EXISTS (SELECT 1 FROM instance WHERE study_uid = old.study_uid
        AND series_uid = old.series_uid AND status = 1);
    DELETE FROM eqt_value WHERE study_uid = old.study_uid AND series_uid = '' AND sop_uid = ''
        AND NOT EXISTS (SELECT 1 FROM instance WHERE study_uid = old.study_uid AND status = 1);
END;
-- External metadata belongs to its study: it goes when the study's last instance is deleted
-- (not when one is replaced: the new version is reserved, status 0, at that moment). A
-- delete removes an updated instance's original (status 2) in the same statement; the
-- trigger fires on either kind of row, so whichever goes last takes the metadata with it,
-- whatever order the statement deletes them in (version 1 fired on status 1 only).
DROP TRIGGER IF EXISTS external_metadata_study_delete;
CREATE TRIGGER IF NOT EXISTS external_metadata_study_delete_v2 AFTER DELETE ON instance
    WHEN old.status IN (1, 2)
        AND NOT EXISTS (SELECT 1 FROM instance WHERE study_uid = old.study_uid)
BEGIN
    DELETE FROM external_metadata WHERE study_uid = old.study_uid;
END;

CREATE TABLE IF NOT EXISTS eqt_error (
    tag_key INTEGER NOT NULL,
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    sop_uid TEXT NOT NULL,
    created_at TEXT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (tag_key, study_uid, series_uid, sop_uid)
);

CREATE TABLE IF NOT EXISTS external_metadata (
    study_uid TEXT NOT NULL,
    tag TEXT NOT NULL,
    vr TEXT NOT NULL,
    text_value TEXT,
    num_value REAL,
    norm_value TEXT,
    PRIMARY KEY (study_uid, tag)
);
CREATE TABLE IF NOT EXISTS external_metadata_tag (
    tag TEXT PRIMARY KEY,
    vr TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS workitem (
    workitem_key INTEGER PRIMARY KEY AUTOINCREMENT,
    workitem_uid TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL,
    transaction_uid TEXT,
    patient_name TEXT,
    patient_name_norm TEXT,
    patient_id TEXT,
    study_uid TEXT,
    scheduled_start_datetime TEXT,
    dataset BLOB NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS workitem_value (
    workitem_key INTEGER NOT NULL,
    path TEXT NOT NULL,
    value TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS workitem_value_by_path ON workitem_value (path, value);
CREATE INDEX IF NOT EXISTS workitem_value_by_workitem
    ON workitem_value (workitem_key, path, value);

CREATE TABLE IF NOT EXISTS operation (
    operation_id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    status TEXT NOT NULL,
    percent_complete INTEGER NOT NULL DEFAULT 0,
    resources TEXT NOT NULL DEFAULT '[]',
    checkpoint TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- The resources an operation holds while it runs (a bulk update, its studies), so that two
-- operations never work on one at once; a row whose operation has finished is free.
CREATE TABLE IF NOT EXISTS operation_hold (
    resource TEXT PRIMARY KEY,
    operation_id TEXT NOT NULL
);

-- The change feed (dicom_core.domain.change_feed). The sequence is allocated inside the
-- write transaction of the change, and SQLite has one writer at a time, so entries become
-- visible in sequence order with no gap: AUTOINCREMENT never reuses a value, and a rolled-back
-- transaction gives its value back. current_watermark is the instance's version now (NULL
-- once it is deleted), set on every entry of the instance by each later change of it.
-- With durable writes the WAL is synced just after the commit, outside the writers' lock, so
-- the feed's reader syncs it too before returning entries (sqlite_change_feed.py): an entry
-- a power cut could still take back (its sequence then given again) is never returned.
CREATE TABLE IF NOT EXISTS change_feed (
    sequence INTEGER PRIMARY KEY AUTOINCREMENT,
    timestamp TEXT NOT NULL,
    action TEXT NOT NULL,
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    sop_uid TEXT NOT NULL,
    watermark INTEGER NOT NULL,
    current_watermark INTEGER
);

-- Named positions of the jobs that follow the change feed (the event publisher's last
-- published sequence), moved forward only, by compare-and-set (sqlite_cursors.py).
CREATE TABLE IF NOT EXISTS cursor (
    name TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS job (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    body TEXT NOT NULL,
    visible_at REAL NOT NULL,
    dequeue_count INTEGER NOT NULL DEFAULT 0,
    receipt TEXT,
    poison_reason TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS job_by_queue ON job (queue, poison_reason, visible_at);
-- Poison messages live in "<queue>-poison", as the Functions host's do; databases written
-- before that kept them in their own queue, marked only by poison_reason.
UPDATE job SET queue = queue || '-poison'
    WHERE poison_reason IS NOT NULL AND queue NOT LIKE '%-poison';

CREATE INDEX IF NOT EXISTS change_feed_by_instance ON change_feed (sop_uid);
CREATE INDEX IF NOT EXISTS change_feed_by_time ON change_feed (timestamp);
-- The expiry sweep's page (sqlite_index.expired_studies); most studies never expire, so only
-- those that do are in it.
CREATE INDEX IF NOT EXISTS study_by_expiry ON study (expires_at) WHERE expires_at IS NOT NULL;
