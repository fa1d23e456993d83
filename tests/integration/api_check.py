#!/usr/bin/env python3
"""Checks espfleet-controller's HTTP API against its OpenAPI description.

    api_check.py lint [--spec docs/api.yaml]
        The description itself: YAML without duplicate keys, OpenAPI 3.1
        structure, every endpoint of the contract (docs/api.md) present,
        every $ref resolvable (into docs/schema/ too), every schema a valid
        JSON Schema 2020-12 and every example valid under its schema; with
        openapi-spec-validator importable, also its OpenAPI 3.1 check.

    api_check.py [common options] call METHOD PATH [--body JSON | --body-file F]
                 [--status N] [--code CODE] [--header 'Name: value']...
                 [--no-token] [--content-type CT | --no-content-type]
        One request; the answer's status, headers and body are checked against
        the spec's response for that path, method and status. Prints the body.

    api_check.py [common options] gets [--viewer]
        Every GET of the spec, with ids found in the answers (every device,
        rollout and job the server names), and the filters of /devices.

    api_check.py [common options] errors --viewer-token T
        401, 403 (forbidden and csrf), 404, 405, 413, 415 and 400: status,
        headers and an Error document with the right code.

    api_check.py [common options] events [--query-token] [--until-file F]
                 [--max-seconds S] [--require NAME]... [--require-deleted R]
                 [--require-state R:STATE]...
        Reads GET /api/v1/events until F exists (or S seconds passed): retry
        first, every event's data valid for its name; then the requirements.

    api_check.py coverage --record FILE
        Every operation of the spec answered 2xx at least once, and every
        error status of the contract was seen.

Common options (environment defaults): --base URL (API_BASE), --token T
(API_TOKEN), --spec FILE (API_SPEC, default docs/api.yaml), --cacert FILE
(API_CACERT), --record FILE (API_CHECK_RECORD: "METHOD TEMPLATE STATUS"
lines appended for `coverage`). With API_CHECK_FAILURES set, every failure
is also appended to that file.

A failure names the request, the path template, the status and the schema
error, e.g.
    FAIL: GET /api/v1/devices/sw-00 [/api/v1/devices/{id}] 200: at /history/0/ts: 'x' is not a 'date-time'
Exit status: 0 all good, 1 a check failed, 2 usage or connection problem.
Works with jsonschema 4.0-4.17 (RefResolver, Debian bookworm's 4.10) and
4.18+ (referencing).
"""
import argparse
import json
import os
import pathlib
import re
import select
import socket
import ssl
import sys
import time
import urllib.parse

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from schema_support import FORMATS, strict_json  # noqa: E402 (shared with test_schemas.sh)
DEFAULT_SPEC = os.path.normpath(os.path.join(HERE, "..", "..", "docs", "api.yaml"))
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

# The endpoints of the contract (docs/api.md): the spec must describe exactly these.
CONTRACT_OPERATIONS = {
    ("get", "/api/v1/whoami"), ("get", "/api/v1/devices"), ("get", "/api/v1/devices/{id}"),
    ("post", "/api/v1/devices/{id}/cancel"), ("post", "/api/v1/groups/{group}/cancel"),
    ("get", "/api/v1/jobs/{job_id}"), ("get", "/api/v1/rollouts"), ("post", "/api/v1/rollouts"),
    ("get", "/api/v1/rollouts/{id}"), ("delete", "/api/v1/rollouts/{id}"),
    ("post", "/api/v1/rollouts/{id}/pause"), ("post", "/api/v1/rollouts/{id}/resume"),
    ("post", "/api/v1/rollouts/{id}/abort"), ("get", "/api/v1/events"),
    ("get", "/"), ("get", "/app.js"), ("get", "/app.css"),
}
# The contract's error codes and their statuses.
CONTRACT_ERRORS = {
    "bad_request": 400, "unauthorized": 401, "forbidden": 403, "csrf": 403, "not_found": 404,
    "method_not_allowed": 405, "conflict": 409, "unsupported_media_type": 415,
    "payload_too_large": 413, "unavailable": 503, "internal": 500,
}
# The GETs `gets` calls (with ids from the answers) and `events` reads.
GETS_KNOWN = {"/api/v1/whoami", "/api/v1/devices", "/api/v1/devices/{id}", "/api/v1/jobs/{job_id}",
              "/api/v1/rollouts", "/api/v1/rollouts/{id}", "/api/v1/events", "/", "/app.js", "/app.css"}
# Error statuses the integration test provokes (coverage checks each was seen).
PROVOKED_ERRORS = (400, 401, 403, 404, 405, 409, 413, 415)


class Failure(Exception):
    pass


class Problems:
    def __init__(self):
        self.lines = []

    def add(self, text):
        self.lines.append(text)
        print("FAIL: " + text, file=sys.stderr)
        path = os.environ.get("API_CHECK_FAILURES")
        if path:  # kept for the test, also when a caller discards the output (polling)
            with open(path, "a", encoding="utf-8") as f:
                f.write("FAIL: " + text + "\n")

    def __bool__(self):
        return bool(self.lines)


PROBLEMS = Problems()

# ---------------------------------------------------------------- loading

class _UniqueKeyLoader(yaml.SafeLoader):
    pass


def _unique_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, "the key %r is given twice" % (key,),
                                                    key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def esc(segment):
    return str(segment).replace("~", "~0").replace("/", "~1")


def unesc(segment):
    return segment.replace("~1", "/").replace("~0", "~")


def pointer_get(doc, pointer):
    node = doc
    if pointer in ("", "#"):
        return node
    for seg in pointer.lstrip("/").split("/"):
        seg = unesc(urllib.parse.unquote(seg))
        if isinstance(node, list):
            node = node[int(seg)]
        else:
            node = node[seg]
    return node


def short(text, n=300):
    text = str(text)
    return text if len(text) <= n else text[:n] + "..."


class Spec:
    """The OpenAPI document plus docs/schema/, and validators for any place in it."""

    def __init__(self, path):
        self.path = os.path.abspath(path)
        self.uri = pathlib.Path(self.path).as_uri()
        with open(self.path, encoding="utf-8") as f:
            self.doc = yaml.load(f, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
        self.store = {self.uri: self.doc}
        self.schema_files = {}
        schema_dir = os.path.join(os.path.dirname(self.path), "schema")
        for name in sorted(os.listdir(schema_dir)):
            if name.endswith(".json"):
                with open(os.path.join(schema_dir, name), encoding="utf-8") as f:
                    contents = json.load(f)
                file_uri = pathlib.Path(os.path.join(schema_dir, name)).as_uri()
                self.schema_files[file_uri] = contents
                self.store[file_uri] = contents
                if isinstance(contents, dict) and "$id" in contents:
                    self.store[contents["$id"]] = contents
        self._validators = {}
        try:
            from referencing import Registry
            from referencing.jsonschema import DRAFT202012
            registry = Registry().with_resources(
                (uri, DRAFT202012.create_resource(contents)) for uri, contents in self.store.items())

            def make(schema):
                return Draft202012Validator(schema, registry=registry, format_checker=FORMATS)
        except ImportError:  # jsonschema 4.0-4.17
            from jsonschema import RefResolver

            def make(schema):
                resolver = RefResolver(base_uri=self.uri, referrer=self.doc, store=dict(self.store))
                return Draft202012Validator(schema, resolver=resolver, format_checker=FORMATS)
        self._make = make
        self.templates = []
        for template in self.doc.get("paths", {}):
            names = re.findall(r"{([^}/]+)}", template)
            regex = "^" + re.sub(r"\\{[^}/]+\\}", "([^/]+)", re.escape(template)) + "$"
            self.templates.append((template, re.compile(regex), names))
        # literal paths first, then fewer parameters
        self.templates.sort(key=lambda t: (len(t[2]), t[0]))

    def validator(self, pointer):
        """A validator for the schema at this JSON pointer of the OpenAPI document."""
        if pointer not in self._validators:
            self._validators[pointer] = self._make({"$ref": self.uri + "#" + pointer})
        return self._validators[pointer]

    def errors(self, pointer, instance):
        return sorted(self.validator(pointer).iter_errors(instance), key=lambda e: list(e.absolute_path))

    def resolve_local(self, node, pointer):
        """Follows a Reference Object ($ref into this document) to (node, pointer)."""
        seen = 0
        while isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            if not ref.startswith("#/"):
                raise Failure("%s: only references into the document are supported here (%s)" % (pointer, ref))
            pointer = ref[1:]
            node = pointer_get(self.doc, pointer)
            seen += 1
            if seen > 20:
                raise Failure("%s: reference loop" % pointer)
        return node, pointer

    def match(self, path):
        for template, regex, names in self.templates:
            m = regex.match(path)
            if m:
                return template, dict(zip(names, (urllib.parse.unquote(g) for g in m.groups())))
        return None, {}

    def operations(self):
        for template, item in self.doc.get("paths", {}).items():
            for method in METHODS:
                if method in item:
                    yield method, template, item[method]


def describe(e, indent=""):
    where = "/" + "/".join(str(x) for x in e.absolute_path)
    schema_path = "/".join(str(x) for x in e.absolute_schema_path if x != "$ref")
    out = "%sat %s: %s (schema path: %s)" % (indent, where, short(e.message), schema_path)
    if e.context:
        alternatives = {}
        for c in e.context:
            alternatives.setdefault(c.relative_schema_path[0], []).append(c)
        for key, errs in sorted(alternatives.items(), key=lambda kv: str(kv[0])):
            out += "\n" + describe(best_match(errs), indent + "    [%s] " % key)
    return out


# ---------------------------------------------------------------- lint

def walk(node, pointer=""):
    yield pointer, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk(v, pointer + "/" + esc(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, pointer + "/" + str(i))


# Where a value is a schema (keyword -> how its value holds schemas), to walk
# JSON Schema without mistaking data (examples, const, enum) for schemas.
SCHEMA_ONE = {"additionalProperties", "items", "contains", "propertyNames", "not", "if", "then", "else",
              "unevaluatedItems", "unevaluatedProperties", "contentSchema"}
SCHEMA_MAP = {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"}
SCHEMA_LIST = {"allOf", "anyOf", "oneOf", "prefixItems"}


def schema_nodes(schema, pointer):
    """Every subschema of a schema (pointer, node)."""
    yield pointer, schema
    if not isinstance(schema, dict):
        return
    for k, v in schema.items():
        p = pointer + "/" + esc(k)
        if k in SCHEMA_ONE:
            yield from schema_nodes(v, p)
        elif k in SCHEMA_MAP and isinstance(v, dict):
            for name, sub in v.items():
                yield from schema_nodes(sub, p + "/" + esc(name))
        elif k in SCHEMA_LIST and isinstance(v, list):
            for i, sub in enumerate(v):
                yield from schema_nodes(sub, p + "/" + str(i))


def spec_schemas(spec):
    """Every place of the OpenAPI document that holds a JSON Schema: (pointer, schema)."""
    doc = spec.doc
    out = []
    for name in doc.get("components", {}).get("schemas", {}):
        out.append(("/components/schemas/" + esc(name), doc["components"]["schemas"][name]))
    for pointer, node in walk(doc):
        if not isinstance(node, dict) or pointer.startswith("/components/schemas/"):
            continue
        parts = pointer.split("/")
        # media types, parameters and headers hold a schema
        if "schema" in node and isinstance(node["schema"], (dict, bool)) and \
                (len(parts) >= 2 and parts[-2] in ("content",) or "in" in node or
                 (len(parts) >= 2 and parts[-2] == "headers")):
            out.append((pointer + "/schema", node["schema"]))
        if "x-sse-events" in node:
            for name, s in node["x-sse-events"].items():
                out.append((pointer + "/x-sse-events/" + esc(name), s))
    return out


def lint(spec_path):
    try:
        spec = Spec(spec_path)
    except (yaml.YAMLError, OSError, ValueError) as e:
        PROBLEMS.add("%s: cannot be read: %s" % (spec_path, e))
        return
    doc = spec.doc
    name = os.path.basename(spec.path)

    # --- OpenAPI 3.1 structure (what openapi-spec-validator would also say, in short)
    if doc.get("openapi") != "3.1.0":
        PROBLEMS.add("%s: openapi must be 3.1.0" % name)
    info = doc.get("info", {})
    if not isinstance(info.get("title"), str) or not isinstance(info.get("version"), str):
        PROBLEMS.add("%s: info.title and info.version must be strings" % name)
    schemes = doc.get("components", {}).get("securitySchemes", {})
    tags = {t["name"] for t in doc.get("tags", [])}

    def check_security(where, reqs):
        for req in reqs or []:
            for scheme in req:
                if scheme not in schemes:
                    PROBLEMS.add("%s: security names %s, which securitySchemes lacks" % (where, scheme))

    check_security("security", doc.get("security"))
    operation_ids = {}
    found = set()
    for method, template, op in spec.operations():
        where = "%s %s" % (method.upper(), template)
        found.add((method, template))
        if not template.startswith("/"):
            PROBLEMS.add("%s: a path must start with /" % where)
        oid = op.get("operationId")
        if not oid:
            PROBLEMS.add("%s: no operationId" % where)
        elif oid in operation_ids:
            PROBLEMS.add("%s: operationId %s is also %s's" % (where, oid, operation_ids[oid]))
        else:
            operation_ids[oid] = where
        for t in op.get("tags", []):
            if t not in tags:
                PROBLEMS.add("%s: tag %s is not declared" % (where, t))
        check_security(where, op.get("security"))
        params = []
        for i, p in enumerate(doc["paths"][template].get("parameters", []) + op.get("parameters", [])):
            try:
                p, _ = spec.resolve_local(p, "%s parameters[%d]" % (where, i))
            except (Failure, KeyError) as e:
                PROBLEMS.add("%s: parameter %d: %s" % (where, i, e))
                continue
            if not {"name", "in"} <= set(p) or ("schema" not in p and "content" not in p):
                PROBLEMS.add("%s: parameter %s needs name, in and schema" % (where, p.get("name")))
            params.append(p)
        declared = {p["name"] for p in params if p.get("in") == "path"}
        placeholders = set(re.findall(r"{([^}/]+)}", template))
        if declared != placeholders:
            PROBLEMS.add("%s: path parameters %s, placeholders %s" % (where, sorted(declared), sorted(placeholders)))
        for p in params:
            if p.get("in") == "path" and p.get("required") is not True:
                PROBLEMS.add("%s: path parameter %s must be required" % (where, p["name"]))
        responses = op.get("responses") or {}
        if not responses:
            PROBLEMS.add("%s: no responses" % where)
        for status, resp in responses.items():
            if not isinstance(status, str) or not re.match(r"^([1-5](\d\d|XX)|default)$", status):
                PROBLEMS.add("%s: response key %r is not a quoted status code" % (where, status))
            try:
                resp, _ = spec.resolve_local(resp, where)
            except (Failure, KeyError) as e:
                PROBLEMS.add("%s %s: %s" % (where, status, e))
                continue
            if not isinstance(resp.get("description"), str):
                PROBLEMS.add("%s %s: a response needs a description" % (where, status))
            for mt, media in (resp.get("content") or {}).items():
                if "json" in mt and "schema" not in media:
                    PROBLEMS.add("%s %s %s: no schema" % (where, status, mt))
            if str(status).startswith(("4", "5")) and "application/json" not in (resp.get("content") or {}):
                PROBLEMS.add("%s %s: an error answers an Error document (application/json)" % (where, status))
        if method in ("post", "delete") and template.startswith("/api/") and \
                not any(s.get("bearer") == ["operator"] for s in op.get("security", [])):
            PROBLEMS.add("%s: a write needs the operator role in its security" % where)
    missing = CONTRACT_OPERATIONS - found
    extra = found - CONTRACT_OPERATIONS
    for m, t in sorted(missing):
        PROBLEMS.add("%s: the contract's %s %s is not described" % (name, m.upper(), t))
    for m, t in sorted(extra):
        PROBLEMS.add("%s: %s %s is not in the contract (docs/api.md)" % (name, m.upper(), t))
    codes = set()
    try:
        codes = set(pointer_get(doc, "/components/schemas/Error/properties/error/properties/code/enum"))
    except (KeyError, TypeError):
        PROBLEMS.add("%s: components/schemas/Error has no code enum" % name)
    if codes != set(CONTRACT_ERRORS):
        PROBLEMS.add("%s: Error codes %s differ from the contract's %s" % (name, sorted(codes), sorted(CONTRACT_ERRORS)))

    # --- every $ref resolves (in the document and in docs/schema/, by their $id)
    def check_refs(root, base, label):
        for pointer, node in walk(root):
            if isinstance(node, dict) and isinstance(node.get("$ref"), str):
                here = base
                uri, frag = urllib.parse.urldefrag(urllib.parse.urljoin(here, node["$ref"]))
                if uri not in spec.store:
                    PROBLEMS.add("%s#%s: $ref %s: no such document (%s)" % (label, pointer, node["$ref"], uri))
                    continue
                try:
                    if frag.startswith("/") or frag == "":
                        pointer_get(spec.store[uri], frag)
                    else:
                        PROBLEMS.add("%s#%s: $ref %s: anchors are not used here" % (label, pointer, node["$ref"]))
                except (KeyError, IndexError, ValueError, TypeError):
                    PROBLEMS.add("%s#%s: $ref %s: %s does not exist in %s" % (label, pointer, node["$ref"], frag, uri))
    check_refs(doc, spec.uri, name)
    for file_uri, contents in spec.schema_files.items():
        check_refs(contents, contents.get("$id", file_uri), os.path.basename(file_uri))

    # --- every schema compiles (2020-12), and the examples validate
    meta = Draft202012Validator(Draft202012Validator.META_SCHEMA)
    for file_uri, contents in spec.schema_files.items():
        for e in meta.iter_errors(contents):
            PROBLEMS.add("%s: not a valid 2020-12 schema: %s" % (os.path.basename(file_uri), describe(e)))
    n_schemas = 0
    for pointer, schema in spec_schemas(spec):
        n_schemas += 1
        for e in meta.iter_errors(schema):
            PROBLEMS.add("%s#%s: not a valid 2020-12 schema: %s" % (name, pointer, describe(e)))
            break
        for sub_pointer, sub in schema_nodes(schema, pointer):
            if isinstance(sub, dict) and ("example" in sub or "nullable" in sub):
                PROBLEMS.add("%s#%s: example/nullable are OpenAPI 3.0; 3.1 schemas use examples and type null"
                             % (name, sub_pointer))
        try:
            spec.validator(pointer).iter_errors(None)  # builds the validator
        except Exception as e:  # noqa: BLE001 - any failure to build is a lint problem
            PROBLEMS.add("%s#%s: does not compile: %s" % (name, pointer, e))
            continue
        for i, example in enumerate(schema.get("examples", []) if isinstance(schema, dict) else []):
            for e in spec.errors(pointer, example):
                PROBLEMS.add("%s#%s/examples/%d is invalid:\n%s" % (name, pointer, i, describe(e, "    ")))
    n_examples = 0
    for pointer, node in walk(doc):
        parts = pointer.split("/")
        if len(parts) >= 2 and parts[-2] == "content" and isinstance(node, dict) and "schema" in node \
                and "json" in unesc(parts[-1]):
            samples = []
            if "example" in node:
                samples.append(("example", node["example"]))
            for key, ex in (node.get("examples") or {}).items():
                ex, _ = spec.resolve_local(ex, pointer)
                samples.append(("examples/" + key, ex.get("value")))
            for label, value in samples:
                n_examples += 1
                for e in spec.errors(pointer + "/schema", value):
                    PROBLEMS.add("%s#%s/%s is invalid:\n%s" % (name, pointer, label, describe(e, "    ")))
    # every component is used
    text = json.dumps(doc)
    answers_by_name = {"MethodNotAllowed"}  # api_check's answer for a method the spec does not list (405)
    for kind in ("schemas", "responses", "parameters", "headers", "requestBodies"):
        for comp in doc.get("components", {}).get(kind, {}):
            if '"#/components/%s/%s"' % (kind, esc(comp)) not in text and kind != "schemas" and \
                    comp not in answers_by_name:
                PROBLEMS.add("%s: components/%s/%s is never used" % (name, kind, comp))
    print("%s: %d operations, %d schemas, %d request/response examples checked"
          % (name, len(found), n_schemas, n_examples), file=sys.stderr)

    # --- the OpenAPI 3.1 meta-schema check, when openapi-spec-validator is here
    try:
        from openapi_spec_validator import validate as osv_validate
    except ImportError:
        print("%s: openapi-spec-validator is not installed: its OpenAPI 3.1 check skipped" % name, file=sys.stderr)
        return
    try:
        osv_validate(doc, base_uri=spec.uri)
        print("%s: openapi-spec-validator: valid OpenAPI 3.1" % name, file=sys.stderr)
    except Exception as e:  # noqa: BLE001 - its exception classes differ between versions
        PROBLEMS.add("%s: openapi-spec-validator: %s" % (name, short(e, 2000)))


# ---------------------------------------------------------------- HTTP

class Response:
    def __init__(self, status, reason, headers, body):
        self.status, self.reason, self.headers, self.body = status, reason, headers, body

    def header(self, name):
        values = self.headers.get(name.lower())
        return None if not values else ", ".join(values)


class Client:
    """A small HTTP/1.1 client: one connection per request, and answers read
    even when the server answered before it read the whole body (413)."""

    def __init__(self, base, cacert=None, timeout=15):
        u = urllib.parse.urlsplit(base)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise Failure("--base: %r is not an http(s) URL" % base)
        self.scheme, self.host = u.scheme, u.hostname
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.netloc = u.netloc
        self.origin = "%s://%s" % (u.scheme, u.netloc)
        self.timeout = timeout
        self.ctx = None
        if u.scheme == "https":
            self.ctx = ssl.create_default_context(cafile=cacert)

    def connect(self):
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as e:
            raise Failure("cannot connect to %s: %s" % (self.origin, e))
        if self.ctx:
            sock = self.ctx.wrap_socket(sock, server_hostname=self.host)
        return sock

    def send(self, method, target, headers, body):
        sock = self.connect()
        lines = ["%s %s HTTP/1.1" % (method, target), "Connection: close"]
        if not any(k.lower() == "host" for k, _ in headers):
            lines.insert(1, "Host: %s" % self.netloc)
        lines += ["%s: %s" % kv for kv in headers]
        if body is not None:
            lines.append("Content-Length: %d" % len(body))
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered early (413) and closed: read what it said
        return sock

    def request(self, method, target, headers=(), body=None):
        sock = self.send(method, target, headers, body)
        reader = _Reader(sock, time.monotonic() + self.timeout)
        try:
            status, reason, hdrs = reader.head()
            if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
                payload = b""
            elif "chunked" in ",".join(hdrs.get("transfer-encoding", [])).lower():
                payload = reader.chunked_all()
            elif "content-length" in hdrs:
                payload = reader.exactly(int(hdrs["content-length"][0]))
            else:
                payload = reader.until_close()
        finally:
            sock.close()
        return Response(status, reason, hdrs, payload)


class _Reader:
    def __init__(self, sock, deadline):
        self.sock, self.deadline, self.buf, self.eof = sock, deadline, b"", False

    def fill(self, wait=None):
        """Reads more; False on end of stream or when `wait` seconds passed."""
        if self.eof:
            return False
        limit = self.deadline if wait is None else min(self.deadline, time.monotonic() + wait)
        while True:
            pending = self.sock.pending() if hasattr(self.sock, "pending") else 0
            left = limit - time.monotonic()
            if not pending:
                if left <= 0:
                    if wait is None:
                        raise Failure("the server did not answer in time")
                    return False
                ready, _, _ = select.select([self.sock], [], [], min(left, 0.5))
                if not ready:
                    continue
            try:
                chunk = self.sock.recv(65536)
            except (ssl.SSLWantReadError, BlockingIOError):
                continue
            except (ConnectionResetError, ssl.SSLError):
                chunk = b""
            if not chunk:
                self.eof = True
                return False
            self.buf += chunk
            return True

    def line(self):
        while b"\r\n" not in self.buf:
            if not self.fill():
                raise Failure("the connection ended inside the headers")
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("latin-1")

    def head(self):
        status_line = self.line()
        m = re.match(r"^HTTP/1\.[01] (\d{3})(?: (.*))?$", status_line)
        if not m:
            raise Failure("not an HTTP status line: %r" % status_line)
        headers = {}
        while True:
            line = self.line()
            if not line:
                break
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), []).append(value.strip())
        return int(m.group(1)), m.group(2) or "", headers

    def exactly(self, n):
        while len(self.buf) < n:
            if not self.fill():
                raise Failure("the body ended after %d of %d bytes" % (len(self.buf), n))
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def until_close(self):
        while self.fill():
            pass
        data, self.buf = self.buf, b""
        return data

    def chunked_all(self):
        out = b""
        while True:
            size = int(self.line().split(";")[0], 16)
            if size == 0:
                while self.line():
                    pass
                return out
            out += self.exactly(size)
            self.exactly(2)


# ---------------------------------------------------------------- checking answers

def media_type(value):
    return (value or "").split(";")[0].strip().lower()


def record(args, method, template, status):
    if args.record and template:
        with open(args.record, "a", encoding="utf-8") as f:
            f.write("%s %s %d\n" % (method.upper(), template, status))


def response_spec(spec, method, path, status):
    """(template, params, response object, its pointer) for an answer, or a Failure."""
    template, params = spec.match(path)
    if template is None:
        if status == 404:  # a path the server does not know
            node, pointer = spec.resolve_local({"$ref": "#/components/responses/NotFound"}, "")
            return None, {}, node, pointer
        raise Failure("the path is not in the spec")
    item = spec.doc["paths"][template]
    if method.lower() not in item:
        if status == 405:
            node, pointer = spec.resolve_local({"$ref": "#/components/responses/MethodNotAllowed"}, "")
            return template, params, node, pointer
        raise Failure("%s %s is not in the spec (the server answered %d)" % (method.upper(), template, status))
    responses = item[method.lower()]["responses"]
    for key in (str(status), "%dXX" % (status // 100), "default"):
        if key in responses:
            pointer = "/paths/%s/%s/responses/%s" % (esc(template), method.lower(), key)
            node, pointer = spec.resolve_local(responses[key], pointer)
            return template, params, node, pointer
    raise Failure("status %d is not documented for %s %s (documented: %s)"
                  % (status, method.upper(), template, ", ".join(responses)))


def check_headers(spec, resp_node, pointer, resp, fail):
    for name, hspec in (resp_node.get("headers") or {}).items():
        hnode, hpointer = spec.resolve_local(hspec, pointer + "/headers/" + esc(name))
        value = resp.header(name)
        if value is None:
            if hnode.get("required"):
                fail("header %s is missing" % name)
            continue
        if "schema" in hnode:
            for e in spec.errors(hpointer + "/schema", value):
                fail("header %s: %s" % (name, describe(e)))


def check_answer(spec, args, method, target, resp, expect_status=None, expect_code=None):
    """Checks an answer against the spec; returns the parsed JSON body (or None).
    Every problem is reported with the request, the template and the status."""
    path = urllib.parse.urlsplit(target).path
    label = [None]
    problems = []

    def fail(text):
        where = "%s %s%s %d" % (method.upper(), target, " [%s]" % label[0] if label[0] else "", resp.status)
        problems.append(text)
        PROBLEMS.add("%s: %s" % (where, text))

    if expect_status is not None and resp.status not in expect_status:
        fail("expected status %s; body: %s" % ("/".join(map(str, expect_status)),
                                                short(resp.body.decode("utf-8", "replace"), 400)))
    try:
        template, params, node, pointer = response_spec(spec, method, path, resp.status)
    except Failure as e:
        label[0] = spec.match(path)[0]
        fail(str(e))
        return None
    label[0] = template
    record(args, method, template, resp.status)
    check_headers(spec, node, pointer, resp, fail)
    content = node.get("content") or {}
    mt = media_type(resp.header("content-type"))
    body = None
    if not content:
        if resp.body:
            fail("the spec documents no body, the server sent %d bytes" % len(resp.body))
        return None
    if mt not in content:
        fail("Content-Type %r is not one the spec documents (%s)" % (resp.header("content-type"), ", ".join(content)))
        return None
    try:
        text = resp.body.decode("utf-8")
    except UnicodeDecodeError as e:
        fail("the body is not UTF-8: %s" % e)
        return None
    if mt == "application/json" or mt.endswith("+json"):
        try:
            body = strict_json(text)
        except ValueError as e:
            fail("the body is not JSON (%s): %s" % (e, short(text)))
            return None
        errs = spec.errors(pointer + "/content/" + esc(mt) + "/schema", body)
        if errs:
            shown = [describe(e, "    ") for e in errs[:10]]
            if len(errs) > 10:
                shown.append("    ... and %d more" % (len(errs) - 10))
            fail("the body does not match the spec's schema:\n%s\n    body: %s" % ("\n".join(shown), short(text, 600)))
        if expect_code is not None:
            code = body.get("error", {}).get("code") if isinstance(body, dict) and isinstance(body.get("error"), dict) else None
            if code != expect_code:
                fail("expected error code %s, got %s" % (expect_code, code))
        if not problems and 200 <= resp.status < 300:
            semantic_checks(method.upper(), template, params, target, body, fail)
    return body


def semantic_checks(method, template, params, target, body, fail):
    """What the contract says beyond the schema."""
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(target).query))
    if method == "POST" and template == "/api/v1/rollouts":
        return
    if method != "GET" and not re.match(r"^/api/v1/rollouts/{id}/(pause|resume|abort)$", template or ""):
        return
    if template == "/api/v1/devices":
        ids = [d["device_id"] for d in body["devices"]]
        if ids != sorted(ids):
            fail("devices are not sorted by device_id: %s" % ids)
        if len(ids) != len(set(ids)):
            fail("a device is listed twice: %s" % ids)
        if body["total"] < len(ids):
            fail("total %d is less than the %d devices listed" % (body["total"], len(ids)))
        if not query and body["total"] != len(ids):
            fail("without filters total (%d) must be the number of devices (%d)" % (body["total"], len(ids)))
        if sum(body["counts"].values()) != body["total"]:
            fail("counts %s do not add up to total %d" % (body["counts"], body["total"]))
        for d in body["devices"]:
            key = "offline" if not d["online"] else (d["state"] or "unknown")
            if "state" in query and key != query["state"]:
                fail("state=%s lists %s (counted as %s)" % (query["state"], d["device_id"], key))
            if "group" in query and query["group"] not in d["groups"]:
                fail("group=%s lists %s of groups %s" % (query["group"], d["device_id"], d["groups"]))
            if "job" in query and d["job_id"] != query["job"]:
                fail("job=%s lists %s with job %s" % (query["job"], d["device_id"], d["job_id"]))
            if "q" in query and query["q"].lower() not in d["device_id"].lower():
                fail("q=%s lists %s, whose id does not contain it" % (query["q"], d["device_id"]))
    elif template == "/api/v1/devices/{id}":
        if body["device_id"] != params["id"]:
            fail("device_id %s, asked for %s" % (body["device_id"], params["id"]))
        ts = [h["ts"] for h in body["history"]]
        if ts != sorted(ts, reverse=True):
            fail("history is not newest first: %s" % ts)
    elif template == "/api/v1/jobs/{job_id}":
        if body["job_id"] != params["job_id"]:
            fail("job_id %s, asked for %s" % (body["job_id"], params["job_id"]))
        tally = {}
        for r in body["results"]:
            tally[r["state"]] = tally.get(r["state"], 0) + 1
        if {k: v for k, v in body["counts"].items() if v} != tally:
            fail("counts %s do not match the results %s" % (body["counts"], tally))
    elif template == "/api/v1/rollouts":
        ids = [r["rollout_id"] for r in body["rollouts"]]
        if len(ids) != len(set(ids)):
            fail("a rollout is listed twice: %s" % ids)
    elif template == "/api/v1/rollouts/{id}":
        if body["status"]["rollout_id"] != params["id"] or body["rollout"]["rollout_id"] != params["id"]:
            fail("status/rollout name %s/%s, asked for %s"
                 % (body["status"]["rollout_id"], body["rollout"]["rollout_id"], params["id"]))
        if body["status"]["job_id"] not in (None, body["rollout"]["job"]["job_id"]):
            fail("status job_id %s, the document's job %s" % (body["status"]["job_id"], body["rollout"]["job"]["job_id"]))
        rows = [r["device_id"] for r in body["devices"]]
        if len(rows) != len(set(rows)):
            fail("a device has two rows: %s" % rows)
        if body["status"]["state"] != "pending" and len(rows) != body["status"]["devices"]:
            fail("%d rows, the status counts %d devices" % (len(rows), body["status"]["devices"]))
        counts = {}
        for r in body["devices"]:
            counts[r["state"]] = counts.get(r["state"], 0) + 1
        status_counts = {k: v for k, v in body["status"]["counts"].items() if v}
        if body["status"]["state"] != "pending" and counts != status_counts:
            fail("the rows count %s, the status %s" % (counts, status_counts))
    elif re.match(r"^/api/v1/rollouts/{id}/(pause|resume|abort)$", template or ""):
        action = template.rsplit("/", 1)[1]
        if body.get("rollout_id") != params["id"] or body.get("action") != action:
            fail("answer %s, expected rollout_id %s and action %s" % (body, params["id"], action))


def do_request(client, spec, args, method, target, token=None, body=None, headers=(), content_type="default",
               expect_status=None, expect_code=None):
    hdrs = list(headers)
    if token:
        hdrs.append(("Authorization", "Bearer " + token))
    if content_type == "default":
        content_type = "application/json" if method in ("POST", "DELETE", "PUT", "PATCH") else None
    if content_type:
        hdrs.append(("Content-Type", content_type))
    hdrs.append(("Accept", "application/json"))
    if isinstance(body, str):
        body = body.encode("utf-8")
    resp = client.request(method, target, hdrs, body)
    return resp, check_answer(spec, args, method, target, resp, expect_status, expect_code)


# ---------------------------------------------------------------- commands

def cmd_call(client, spec, args):
    body = args.body
    if args.body_file:
        with open(args.body_file, "rb") as f:
            body = f.read()
    headers = []
    for h in args.header:
        name, _, value = h.partition(":")
        headers.append((name.strip(), value.strip()))
    ct = "default"
    if args.no_content_type:
        ct = None
    elif args.content_type:
        ct = args.content_type
    resp, _ = do_request(client, spec, args, args.method.upper(), args.path, None if args.no_token else args.token,
                         body, headers, ct, [int(s) for s in args.status.split(",")] if args.status else None,
                         args.code)
    sys.stdout.write(resp.body.decode("utf-8", "replace"))
    if resp.body and not resp.body.endswith(b"\n"):
        sys.stdout.write("\n")


def q(value):
    return urllib.parse.quote(value, safe="")


def cmd_gets(client, spec, args):
    token = args.token
    done = set()  # templates called
    calls = [0]

    def get(target, status=(200,), headers=(), **kw):
        calls[0] += 1
        resp, body = do_request(client, spec, args, "GET", target, kw.get("token", token), headers=headers,
                                expect_status=list(status))
        done.add(spec.match(urllib.parse.urlsplit(target).path)[0])
        return resp, body

    get("/api/v1/whoami")
    _, devices = get("/api/v1/devices")
    devices = (devices or {}).get("devices", [])
    jobs_from_history = set()
    for d in devices:
        _, detail = get("/api/v1/devices/" + q(d["device_id"]))
        for h in (detail or {}).get("history", []):
            jobs_from_history.add((h["job_id"], d["device_id"]))
    # the filters, with values the answers gave
    with_state = [d for d in devices if d.get("state")]
    with_group = [d for d in devices if d.get("groups")]
    with_job = [d for d in devices if d.get("job_id")]
    if with_state:
        get("/api/v1/devices?state=" + q(with_state[0]["state"]))
    if with_group:
        get("/api/v1/devices?group=" + q(with_group[0]["groups"][0]))
        if with_state:
            get("/api/v1/devices?group=%s&state=%s" % (q(with_group[0]["groups"][0]), q(with_state[0]["state"])))
    if with_job:
        get("/api/v1/devices?job=" + q(with_job[0]["job_id"]))
    if devices:
        _, one = get("/api/v1/devices?q=" + q(devices[0]["device_id"]))
        if one and devices[0]["device_id"] not in [d["device_id"] for d in one["devices"]]:
            PROBLEMS.add("GET /api/v1/devices?q=%s does not list %s" % (devices[0]["device_id"], devices[0]["device_id"]))
    get("/api/v1/devices?q=" + q("no-device-has-this"))  # must list none (semantic_checks)
    _, rollouts = get("/api/v1/rollouts")
    job_ids = set()
    for r in (rollouts or {}).get("rollouts", []):
        get("/api/v1/rollouts/" + q(r["rollout_id"]))
        if r.get("job_id"):
            job_ids.add(r["job_id"])
    for job in sorted(job_ids - {j for j, _ in jobs_from_history}):
        get("/api/v1/jobs/" + q(job), status=(200, 404))  # nothing final yet is a 404
    for job in sorted({j for j, _ in jobs_from_history}):
        _, res = get("/api/v1/jobs/" + q(job))
        if res is not None:
            have = {r["device_id"] for r in res["results"]}
            for j, dev in jobs_from_history:
                if j == job and dev not in have:
                    PROBLEMS.add("GET /api/v1/jobs/%s: %s's history names the job, the results do not list it" % (job, dev))
    for page in ("/", "/app.js", "/app.css"):
        resp, _ = get(page, token=None)
        if resp.status == 200 and resp.header("etag"):  # revalidation
            get(page, status=(304,), headers=[("If-None-Match", resp.header("etag"))], token=None)
    # every GET of the spec is one this command knows how to call (events: the events command)
    for method, template, _ in spec.operations():
        if method == "get" and template not in GETS_KNOWN:
            PROBLEMS.add("gets: the spec's GET %s is new: teach api_check.py's gets its parameters" % template)
    print("gets: %d requests, %d devices, %d rollouts" % (calls[0], len(devices),
          len((rollouts or {}).get("rollouts", []))), file=sys.stderr)


def cmd_errors(client, spec, args):
    op, viewer = args.token, args.viewer_token
    n = [0]

    def check(method, target, status, code, token=None, body=None, headers=(), content_type="default"):
        n[0] += 1
        return do_request(client, spec, args, method, target, token, body, headers, content_type,
                          [status] if isinstance(status, int) else list(status), code)

    unknown = "no-such-id-" + str(os.getpid())
    # 401: no token, an unknown one, another scheme; the query token only on /events
    check("GET", "/api/v1/whoami", 401, "unauthorized")
    check("GET", "/api/v1/devices", 401, "unauthorized", token="not-a-token")
    check("GET", "/api/v1/rollouts", 401, "unauthorized", headers=[("Authorization", "Basic b3BlcmF0b3I6eA==")])
    check("GET", "/api/v1/events?access_token=not-a-token", 401, "unauthorized")
    check("GET", "/api/v1/whoami?access_token=" + q(op), 401, "unauthorized")
    check("POST", "/api/v1/rollouts/%s/pause" % unknown, 401, "unauthorized", body="{}")
    # 403: a viewer on every operator route
    check("POST", "/api/v1/rollouts", 403, "forbidden", token=viewer, body="{}")
    for action in ("pause", "resume", "abort"):
        check("POST", "/api/v1/rollouts/%s/%s" % (unknown, action), 403, "forbidden", token=viewer, body="{}")
    check("DELETE", "/api/v1/rollouts/" + unknown, 403, "forbidden", token=viewer)
    check("POST", "/api/v1/devices/%s/cancel" % unknown, 403, "forbidden", token=viewer, body='{"job_id":"x"}')
    check("POST", "/api/v1/groups/%s/cancel" % unknown, 403, "forbidden", token=viewer, body='{"job_id":"x"}')
    # 403 csrf: a foreign Origin; the server's own origin passes (then: 404)
    check("POST", "/api/v1/rollouts/%s/pause" % unknown, 403, "csrf", token=op, body="{}",
          headers=[("Origin", "http://evil.example")])
    check("POST", "/api/v1/rollouts/%s/pause" % unknown, 403, "csrf", token=op, body="{}", headers=[("Origin", "null")])
    other = ("https://" if client.scheme == "http" else "http://") + client.netloc
    check("POST", "/api/v1/rollouts/%s/pause" % unknown, 403, "csrf", token=op, body="{}", headers=[("Origin", other)])
    check("DELETE", "/api/v1/rollouts/" + unknown, 403, "csrf", token=op, headers=[("Origin", "http://evil.example")])
    check("POST", "/api/v1/rollouts/%s/pause" % unknown, 404, "not_found", token=op, body="{}",
          headers=[("Origin", client.origin)])
    # 415: a write without Content-Type: application/json
    check("POST", "/api/v1/rollouts/%s/pause" % unknown, 415, "unsupported_media_type", token=op, body="{}",
          content_type="text/plain")
    check("POST", "/api/v1/rollouts/%s/pause" % unknown, 415, "unsupported_media_type", token=op, body="{}",
          content_type=None)
    check("POST", "/api/v1/rollouts", 415, "unsupported_media_type", token=op, body="{}",
          content_type="application/x-www-form-urlencoded")
    check("DELETE", "/api/v1/rollouts/" + unknown, 415, "unsupported_media_type", token=op, content_type=None)
    check("POST", "/api/v1/devices/%s/cancel" % unknown, 415, "unsupported_media_type", token=op,
          body='{"job_id":"x"}', content_type="text/plain")
    # ... with parameters it is still JSON (then: 404)
    check("POST", "/api/v1/rollouts/%s/pause" % unknown, 404, "not_found", token=op, body="{}",
          content_type="application/json; charset=utf-8")
    # 404: unknown ids and paths
    check("GET", "/api/v1/devices/" + unknown, 404, "not_found", token=op)
    check("GET", "/api/v1/rollouts/" + unknown, 404, "not_found", token=op)
    check("GET", "/api/v1/jobs/" + unknown, 404, "not_found", token=op)
    for action in ("pause", "resume", "abort"):
        check("POST", "/api/v1/rollouts/%s/%s" % (unknown, action), 404, "not_found", token=op)
    check("GET", "/api/v1/no-such-endpoint", 404, "not_found", token=op)
    check("GET", "/api/v2/whoami", 404, "not_found", token=op)
    # 405: a known path, another method
    check("PUT", "/api/v1/rollouts", 405, "method_not_allowed", token=op, body="{}")
    check("DELETE", "/api/v1/devices", 405, "method_not_allowed", token=op)
    check("POST", "/api/v1/whoami", 405, "method_not_allowed", token=op, body="{}")
    check("PATCH", "/api/v1/rollouts/" + unknown, 405, "method_not_allowed", token=op, body="{}")
    # 413: over 256 KiB (exactly 256 KiB is read: then the unknown key is a 400)
    def padded(n):
        head, tail = '{"rollout_id":"r-big","pad":"', '"}'
        return head + "x" * (n - len(head) - len(tail)) + tail
    check("POST", "/api/v1/rollouts", 413, "payload_too_large", token=op, body=padded(300 * 1024))
    check("POST", "/api/v1/rollouts", 413, "payload_too_large", token=op, body=padded(256 * 1024 + 1))
    check("POST", "/api/v1/rollouts", 400, "bad_request", token=op, body=padded(256 * 1024))
    # 400: not JSON, not a valid document
    check("POST", "/api/v1/rollouts", 400, "bad_request", token=op, body="{not json")
    check("POST", "/api/v1/rollouts", 400, "bad_request", token=op, body="[]")
    job = {"job_id": "api-check-bad", "url": "https://127.0.0.1/never.bin", "sha256": "0" * 64, "size": 1,
           "version": "1.0.0"}
    _, err = check("POST", "/api/v1/rollouts", 400, "bad_request", token=op,
                   body=json.dumps({"rollout_id": "r-bad-steps", "job": job, "target": {"groups": ["g"]},
                                    "steps": [{"percent": 50}]}))
    if err and "step" not in err.get("error", {}).get("message", ""):
        PROBLEMS.add("POST /api/v1/rollouts (last step 50 %%): the message does not name the steps: %s" % err)
    check("POST", "/api/v1/rollouts", 400, "bad_request", token=op,
          body=json.dumps({"rollout_id": "r-bad-both", "job": job, "url": job["url"], "target": {"groups": ["g"]}}))
    check("POST", "/api/v1/devices/%s/cancel" % unknown, 400, "bad_request", token=op, body='{"job_id":"a/b"}')
    check("POST", "/api/v1/groups/%s/cancel" % unknown, 400, "bad_request", token=op, body="{}")
    # the viewer may read (every GET), and reach /events with the query token
    check("GET", "/api/v1/whoami", 200, None, token=viewer)
    print("errors: %d requests" % n[0], file=sys.stderr)


def parse_sse_fields(line):
    if line.startswith(":"):
        return "comment", line[1:]
    name, colon, value = line.partition(":")
    if colon and value.startswith(" "):
        value = value[1:]
    return name, value


def cmd_events(client, spec, args):
    template = "/api/v1/events"
    target = template
    hdrs = [("Accept", "text/event-stream")]
    if args.query_token:
        target += "?access_token=" + q(args.token)
    else:
        hdrs.append(("Authorization", "Bearer " + args.token))
    sock = client.send("GET", target, hdrs, None)
    deadline = time.monotonic() + args.max_seconds
    reader = _Reader(sock, time.monotonic() + 15)
    status, reason, headers = reader.head()
    reader.deadline = deadline + 5
    resp = Response(status, reason, headers, b"")
    pointer = "/paths/%s/get/responses/200" % esc(template)
    node = spec.doc["paths"][template]["get"]["responses"].get("200", {})
    label = "GET %s %d" % (target if not args.query_token else template + "?access_token=...", status)
    record(args, "get", template, status)
    if status != 200:
        body = reader.until_close() if "content-length" not in headers else reader.exactly(int(headers["content-length"][0]))
        PROBLEMS.add("%s: the event stream did not open: %s" % (label, short(body.decode("utf-8", "replace"))))
        return
    check_headers(spec, node, pointer, resp, lambda text: PROBLEMS.add("%s: %s" % (label, text)))
    media = node["content"].get(media_type(resp.header("content-type")))
    if media is None:
        PROBLEMS.add("%s: Content-Type %r, the spec says text/event-stream" % (label, resp.header("content-type")))
        return
    media_pointer = pointer + "/content/" + esc("text/event-stream")
    events = media.get("x-sse-events", {})
    chunked = "chunked" in ",".join(headers.get("transfer-encoding", [])).lower()
    raw = b""          # the stream, de-chunked
    pending = b""      # chunked framing not yet decoded
    first_field = [None]
    counts = {}
    deleted = set()
    states = {}
    data_lines, event_name = [], None
    keepalives = [0]

    def dispatch():
        nonlocal data_lines, event_name
        if not data_lines and event_name is None:
            return
        name = event_name or "message"
        data = "\n".join(data_lines)
        data_lines, event_name = [], None
        counts[name] = counts.get(name, 0) + 1
        if name not in events:
            PROBLEMS.add("%s: event %r is not one of %s: %s" % (label, name, sorted(events), short(data)))
            return
        try:
            doc = strict_json(data)
        except ValueError as e:
            PROBLEMS.add("%s: event %s: data is not JSON (%s): %s" % (label, name, e, short(data)))
            return
        for e in spec.errors(media_pointer + "/x-sse-events/" + esc(name), doc):
            PROBLEMS.add("%s: event %s: %s\n    data: %s" % (label, name, describe(e), short(data, 600)))
        if name == "rollout" and isinstance(doc, dict):
            if doc.get("deleted") is True:
                deleted.add(doc.get("rollout_id"))
            else:
                states.setdefault(doc.get("rollout_id"), set()).add(doc.get("state"))

    def lines_of(buffer):
        # SSE lines end in \r\n, \n or \r
        out = []
        while True:
            m = re.search(rb"\r\n|\n|\r", buffer)
            if not m or (m.group() == b"\r" and m.end() == len(buffer)):
                return out, buffer
            out.append(buffer[:m.start()])
            buffer = buffer[m.end():]

    stream_buf = b""
    try:
        while True:
            if args.until_file and os.path.exists(args.until_file):
                break
            if time.monotonic() > deadline:
                break
            got_more = reader.fill(wait=0.25) if not reader.buf else True
            if reader.eof and not reader.buf:
                PROBLEMS.add("%s: the server closed the event stream" % label)
                break
            if not got_more:
                continue
            if chunked:
                pending += reader.buf
                reader.buf = b""
                while True:
                    m = re.match(rb"([0-9A-Fa-f]+)[^\r\n]*\r\n", pending)
                    if not m:
                        break
                    size = int(m.group(1), 16)
                    if size == 0:
                        PROBLEMS.add("%s: the server ended the event stream" % label)
                        pending = b""
                        break
                    if len(pending) < m.end() + size + 2:
                        break
                    raw += pending[m.end():m.end() + size]
                    pending = pending[m.end() + size + 2:]
            else:
                raw += reader.buf
                reader.buf = b""
            stream_buf += raw
            raw = b""
            lines, stream_buf = lines_of(stream_buf)
            for bline in lines:
                line = bline.decode("utf-8", "replace")
                if line == "":
                    dispatch()
                    continue
                field, value = parse_sse_fields(line)
                if field != "comment" and first_field[0] is None:
                    first_field[0] = (field, value)
                if field == "comment":
                    if value.strip() == "keepalive":
                        keepalives[0] += 1
                elif field == "event":
                    event_name = value
                elif field == "data":
                    data_lines.append(value)
                elif field == "retry":
                    if not value.isdigit():
                        PROBLEMS.add("%s: retry %r is not a number" % (label, value))
                elif field == "id":
                    pass
                else:
                    PROBLEMS.add("%s: unknown field %r" % (label, field))
    finally:
        sock.close()
    want_retry = str(media.get("x-sse-retry-ms", 2000))
    if first_field[0] != ("retry", want_retry):
        PROBLEMS.add("%s: the stream must start with 'retry: %s', it started with %r" % (label, want_retry, first_field[0]))
    for name in args.require:
        if not counts.get(name):
            PROBLEMS.add("%s: no %s event arrived (events: %s)" % (label, name, counts))
    if args.require_keepalive and not keepalives[0]:
        PROBLEMS.add("%s: no ': keepalive' comment in %.0f s" % (label, args.max_seconds))
    for r in args.require_deleted:
        if r not in deleted:
            PROBLEMS.add("%s: no rollout event said %s was deleted" % (label, r))
    for rs in args.require_state:
        r, _, state = rs.partition(":")
        if state not in states.get(r, set()):
            PROBLEMS.add("%s: no rollout event showed %s %s (seen: %s)" % (label, r, state, sorted(states.get(r, []))))
    print("events: %s; keepalives %d; rollout states %s; deleted %s" % (
        ", ".join("%s %d" % kv for kv in sorted(counts.items())) or "none", keepalives[0],
        {k: sorted(v) for k, v in states.items()}, sorted(deleted)), file=sys.stderr)


def cmd_coverage(spec, args):
    seen = {}
    with open(args.record, encoding="utf-8") as f:
        for line in f:
            method, template, status = line.split()
            seen.setdefault((method.lower(), template), set()).add(int(status))
    for method, template, _ in spec.operations():
        statuses = seen.get((method, template), set())
        if not any(200 <= s < 300 for s in statuses):
            PROBLEMS.add("coverage: %s %s never answered 2xx (seen: %s)" % (method.upper(), template, sorted(statuses)))
    all_statuses = set().union(*seen.values()) if seen else set()
    for status in PROVOKED_ERRORS:
        if status not in all_statuses:
            PROBLEMS.add("coverage: no answer had status %d" % status)
    print("coverage: %d operations, %d answers of %d distinct statuses" % (
        len(list(spec.operations())), sum(len(v) for v in seen.values()), len(all_statuses)), file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default=os.environ.get("API_BASE"))
    ap.add_argument("--token", default=os.environ.get("API_TOKEN"))
    ap.add_argument("--spec", default=os.environ.get("API_SPEC", DEFAULT_SPEC))
    ap.add_argument("--cacert", default=os.environ.get("API_CACERT") or None)
    ap.add_argument("--record", default=os.environ.get("API_CHECK_RECORD") or None)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("lint")
    c = sub.add_parser("call")
    c.add_argument("method")
    c.add_argument("path")
    c.add_argument("--body")
    c.add_argument("--body-file")
    c.add_argument("--status", help="expected status(es), comma-separated")
    c.add_argument("--code", help="expected error code")
    c.add_argument("--header", action="append", default=[])
    c.add_argument("--no-token", action="store_true")
    c.add_argument("--content-type")
    c.add_argument("--no-content-type", action="store_true")
    sub.add_parser("gets")
    e = sub.add_parser("errors")
    e.add_argument("--viewer-token", required=True)
    v = sub.add_parser("events")
    v.add_argument("--query-token", action="store_true")
    v.add_argument("--until-file")
    v.add_argument("--max-seconds", type=float, default=30)
    v.add_argument("--require", action="append", default=[])
    v.add_argument("--require-deleted", action="append", default=[])
    v.add_argument("--require-state", action="append", default=[])
    v.add_argument("--require-keepalive", action="store_true", help="a ': keepalive' comment must arrive")
    sub.add_parser("coverage")
    args = ap.parse_args()

    if args.cmd == "lint":
        lint(args.spec)
        sys.exit(1 if PROBLEMS else 0)
    try:
        spec = Spec(args.spec)
    except (yaml.YAMLError, OSError, ValueError) as e:
        print("api_check: %s: %s" % (args.spec, e), file=sys.stderr)
        sys.exit(2)
    if args.cmd == "coverage":
        if not args.record:
            ap.error("coverage needs --record (or API_CHECK_RECORD)")
        cmd_coverage(spec, args)
        sys.exit(1 if PROBLEMS else 0)
    if not args.base or not args.token:
        ap.error("--base and --token (or API_BASE and API_TOKEN) are needed")
    try:
        client = Client(args.base, args.cacert)
        {"call": cmd_call, "gets": cmd_gets, "errors": cmd_errors, "events": cmd_events}[args.cmd](client, spec, args)
    except Failure as e:
        print("api_check: %s" % e, file=sys.stderr)
        sys.exit(2)
    sys.exit(1 if PROBLEMS else 0)


if __name__ == "__main__":
    main()
