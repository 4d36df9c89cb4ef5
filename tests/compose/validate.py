"""Checks docker-compose.yml against the Compose Specification schema: a fast first check
before anything is built. Usage: validate.py COMPOSE_FILE SCHEMA"""
import json
import sys

import jsonschema
import yaml

compose, schema = sys.argv[1], sys.argv[2]
with open(schema) as f:
    spec = json.load(f)
with open(compose) as f:
    document = yaml.safe_load(f)
jsonschema.validate(document, spec)
print(f"{compose}: valid against the Compose Specification")
