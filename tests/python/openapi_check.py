"""Checks a service's OpenAPI document with tools that are not ours: the document itself with
openapi-spec-validator (OpenAPI 3.1), every schema's example against its schema, and real
answers the test collected against the schema the document gives for their route, method and
status (jsonschema, draft 2020-12, which OpenAPI 3.1's schemas are).

Usage: openapi_check.py DOCUMENT.json [ANSWERS.json]
ANSWERS is a JSON list of {"method", "path" (the documented template), "status", "body"}.
Prints one JSON line per answer checked, then a summary line; exits 1 on the first problem."""
import json
import sys

from jsonschema import Draft202012Validator
from openapi_spec_validator import validate


def fail(what, **details):
    print(json.dumps({"error": what, **details}, ensure_ascii=False), file=sys.stderr)
    sys.exit(1)


def validator(doc, schema):
    """A validator for `schema` whose `#/components/...` references resolve in `doc`."""
    root = {"components": doc.get("components", {}), **schema}
    return Draft202012Validator(root)


def resolve(doc, obj):
    """Follows one `$ref` to a component (a response object may be one)."""
    ref = obj.get("$ref") if isinstance(obj, dict) else None
    if not ref:
        return obj
    node = doc
    for part in ref.lstrip("#/").split("/"):
        node = node[part]
    return node


def main():
    doc = json.load(open(sys.argv[1], encoding="utf-8"))
    try:
        validate(doc)
    except Exception as e:  # the validator's own exception types vary by version
        fail("documento_invalido", detalle=str(e)[:2000])

    ejemplos = 0
    for name, schema in doc.get("components", {}).get("schemas", {}).items():
        if "example" in schema:
            errors = list(validator(doc, schema).iter_errors(schema["example"]))
            if errors:
                fail("ejemplo_invalido", esquema=name, detalle=errors[0].message)
            ejemplos += 1

    answers = json.load(open(sys.argv[2], encoding="utf-8")) if len(sys.argv) > 2 else []
    for i, a in enumerate(answers):
        operation = doc["paths"].get(a["path"], {}).get(a["method"].lower())
        if operation is None:
            fail("ruta_no_documentada", respuesta=i, method=a["method"], path=a["path"])
        response = operation["responses"].get(str(a["status"]))
        if response is None:
            fail("estado_no_documentado", respuesta=i, method=a["method"], path=a["path"],
                 status=a["status"])
        response = resolve(doc, response)
        content = response.get("content", {})
        media = next((m for m in content if m.startswith("application/json")), None)
        if a["body"] is None:
            print(json.dumps({"respuesta": i, "cuerpo": False}))
            continue
        if media is None:
            fail("cuerpo_no_documentado", respuesta=i, method=a["method"], path=a["path"],
                 status=a["status"])
        schema = content[media].get("schema", {})
        errors = list(validator(doc, schema).iter_errors(a["body"]))
        if errors:
            fail("respuesta_fuera_de_esquema", respuesta=i, method=a["method"], path=a["path"],
                 status=a["status"], detalle=errors[0].message, donde=list(errors[0].path),
                 cuerpo=a["body"])
        print(json.dumps({"respuesta": i, "cuerpo": True}))

    print(json.dumps({"valido": True, "ejemplos": ejemplos, "respuestas": len(answers)}))


main()
