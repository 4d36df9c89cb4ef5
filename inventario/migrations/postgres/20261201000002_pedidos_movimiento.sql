-- PostgreSQL's copy of ../20261201000002_pedidos_movimiento.sql: the movements the service
-- accepted, by task id (the Idempotency-Key, or a uuid4), with the SHA-256 fingerprint of the
-- request; kept for a day (`pedido_en`, seconds since 1970).
CREATE TABLE IF NOT EXISTS pedidos_movimiento (
    tarea_id    TEXT   PRIMARY KEY,
    producto_id BIGINT NOT NULL,
    huella      TEXT   NOT NULL,
    pedido_en   BIGINT NOT NULL
);

CREATE INDEX IF NOT EXISTS pedidos_movimiento_por_fecha ON pedidos_movimiento (pedido_en);
