-- The movements the service accepted, by task id (the client's Idempotency-Key, or a uuid4),
-- with a fingerprint of what was asked: the same key sent again with the same request is a
-- retry; with another request, a mistake to refuse rather than drop. It also lets
-- GET /tareas/{id} tell a task the service issued from an id it never saw. Kept for a day
-- (`pedido_en`, seconds since 1970), the time Celery keeps a task's result.
CREATE TABLE IF NOT EXISTS pedidos_movimiento (
    tarea_id    TEXT    PRIMARY KEY,
    producto_id INTEGER NOT NULL,
    huella      TEXT    NOT NULL,
    pedido_en   INTEGER NOT NULL
);

CREATE INDEX IF NOT EXISTS pedidos_movimiento_por_fecha ON pedidos_movimiento (pedido_en);
