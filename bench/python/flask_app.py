"""The seed's inventory service for the benchmark: Flask + Flask-SQLAlchemy on SQLite, the 20
productos of `seeds/productos.json` loaded into an empty database, `GET /inventario` returning
them as a JSON array. The database file comes from INVENTARIO_DB. The bench serves it with
gunicorn, one sync worker per core: gunicorn -w 2 -b 127.0.0.1:PORT flask_app:app"""
import json
import os

from flask import Flask, jsonify
from flask_sqlalchemy import SQLAlchemy

HERE = os.path.dirname(os.path.abspath(__file__))
SEEDS = os.path.join(HERE, "..", "..", "seeds", "productos.json")

app = Flask(__name__)
app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite:///" + os.path.abspath(
    os.environ.get("INVENTARIO_DB", "inventario-flask.db")
)
db = SQLAlchemy(app)


class Producto(db.Model):
    id = db.Column(db.Integer, primary_key=True)
    nombre = db.Column(db.String(200), nullable=False)
    cantidad = db.Column(db.Integer, nullable=False, default=0)
    precio = db.Column(db.Float, nullable=False, default=0.0)

    def to_dict(self):
        return {"id": self.id, "nombre": self.nombre, "cantidad": self.cantidad, "precio": self.precio}


with app.app_context():
    db.create_all()
    if db.session.query(Producto).count() == 0:
        with open(SEEDS, encoding="utf-8") as f:
            db.session.add_all(Producto(**p) for p in json.load(f))
        db.session.commit()


@app.get("/inventario")
def listar():
    return jsonify([p.to_dict() for p in Producto.query.order_by(Producto.id).all()])


@app.get("/health")
def health():
    return jsonify({"status": "ok"})
