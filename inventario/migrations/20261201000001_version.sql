-- Each producto's version, moved by every change to it (a replacement, a stock movement), so a
-- client can say which state it read (the ETag of GET /inventario/{id}) and a write made from
-- an older read is refused instead of undoing what it did not see. Rows from before this
-- migration start at 1.
ALTER TABLE productos ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
