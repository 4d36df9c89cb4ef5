-- PostgreSQL's copy of ../20261201000001_version.sql: each producto's version, moved by every
-- change to it (the ETag of GET /inventario/{id}, named by If-Match).
ALTER TABLE productos ADD COLUMN IF NOT EXISTS version BIGINT NOT NULL DEFAULT 1;
