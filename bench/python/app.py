"""The seed's Python worker for the benchmark: the same Celery 5.5 app the interoperability tests
use (`tests/python/celery_app.py`: `obtener_estado` returning the seed's string, `noop`, on queue
`inventario`, Redis as broker and result backend at CELERY_URL), re-exported here so that the
bench runs it as the seed did: celery -A app worker -Q inventario -c 2 -P prefork"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "python"))

from celery_app import app  # noqa: E402,F401
