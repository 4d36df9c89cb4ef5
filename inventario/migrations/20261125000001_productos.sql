-- The inventory. The CHECKs repeat the domain's validation so no writer (service, worker,
-- or a human with the sqlite3 shell) can store a producto the API would refuse to show.
CREATE TABLE IF NOT EXISTS productos (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    nombre    TEXT    NOT NULL CHECK (length(trim(nombre)) BETWEEN 1 AND 120),
    cantidad  INTEGER NOT NULL CHECK (typeof(cantidad) = 'integer' AND cantidad BETWEEN 0 AND 1000000000),
    precio    REAL    NOT NULL CHECK (precio >= 0 AND precio <= 1000000000),
    creado_en      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    actualizado_en TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- Stock movements already applied, by task id. Delivery through the queue is at-least-once,
-- so a movement may arrive twice; this record makes the second arrival a no-op.
CREATE TABLE IF NOT EXISTS movimientos (
    tarea_id           TEXT    PRIMARY KEY,
    producto_id        INTEGER NOT NULL,
    delta              INTEGER NOT NULL,
    cantidad_resultante INTEGER NOT NULL,
    aplicado_en        TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- Seed sets already loaded. Seeding happens once per database, even if every producto is
-- later deleted: a restart must never bring deleted data back.
CREATE TABLE IF NOT EXISTS semillas (
    nombre     TEXT PRIMARY KEY,
    aplicada_en TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
