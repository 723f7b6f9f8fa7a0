"""Audit of ``archive-platform backfill`` against a fake Dagster webserver on loopback.

The fake answers ``/graphql`` over real HTTP; the launch mutation is executed with graphql-core
against an excerpt of Dagster's schema (the ``Error`` interface and the members of
``LaunchBackfillResult``), so an error type only carries the fields the query really selects.

Checked: a password or token in ``--url`` never reaches the output (the success link, an
unreachable server, an HTTP error, a GraphQL error); every refusal names its cause; an answer that
is not GraphQL JSON, or has no data, is one line and not a traceback; a URL that is not http(s)
exits 2 before anything is sent; a URL with a path or query still posts to ``<path>/graphql``.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import graphql
import pytest
from click.testing import CliRunner

from archive_platform import backfill as bf

NOW = datetime(2025, 12, 1, 12, 0, tzinfo=timezone.utc)
SECRET = "s3cretpw"

SCHEMA = graphql.build_schema("""
interface Error { message: String! }
interface PipelineConfigValidationError { message: String! }
type FieldNotDefinedConfigError implements PipelineConfigValidationError { message: String! fieldName: String! }
type LaunchBackfillSuccess { backfillId: String! }
type PartitionSetNotFoundError implements Error { message: String! partitionSetName: String! }
type PartitionKeysNotFoundError implements Error { message: String! partitionKeys: [String!]! }
type RunConfigValidationInvalid { pipelineName: String! errors: [PipelineConfigValidationError!]! }
type InvalidStepError { invalidStepKey: String! }
type InvalidOutputError { stepKey: String! invalidOutputName: String! }
type RunConflict implements Error { message: String! }
type UnauthorizedError implements Error { message: String! }
type PythonError implements Error { message: String! className: String }
type InvalidSubsetError implements Error { message: String! }
type ConflictingExecutionParamsError implements Error { message: String! }
union LaunchBackfillResult = LaunchBackfillSuccess | PartitionSetNotFoundError | PartitionKeysNotFoundError
  | RunConfigValidationInvalid | InvalidStepError | InvalidOutputError | RunConflict | UnauthorizedError
  | PythonError | InvalidSubsetError | ConflictingExecutionParamsError
scalar LaunchBackfillParams
type Query { ok: Boolean }
type Mutation { launchPartitionBackfill(backfillParams: LaunchBackfillParams!): LaunchBackfillResult! }
""")


class Fake:
    """``launch``: the object the mutation resolves to; ``raw``: (status, content type, body) sent
    instead of executing the query. ``requests``: (path, Authorization header, JSON body)."""

    def __init__(self):
        self.launch: dict = {"__typename": "LaunchBackfillSuccess", "backfillId": "bf1"}
        self.raw: tuple[int, str, bytes] | None = None
        self.requests: list[tuple[str, str | None, dict]] = []


@pytest.fixture
def fake(monkeypatch):
    state = Fake()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            state.requests.append((self.path, self.headers.get("authorization"), body))
            if state.raw:
                code, ctype, payload = state.raw
            else:
                res = graphql.graphql_sync(SCHEMA, body["query"], {"launchPartitionBackfill": lambda info, **kw: state.launch},
                                           variable_values=body["variables"])
                code, ctype = 200, "application/json"
                payload = json.dumps({"data": res.data} if not res.errors else
                                     {"errors": [{"message": e.message} for e in res.errors]}).encode()
            self.send_response(code)
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state.port = server.server_address[1]
    monkeypatch.setattr(bf, "utcnow", lambda: NOW)
    monkeypatch.delenv("ARCHIVE_START_DATE", raising=False)
    monkeypatch.delenv("ARCHIVE_DAGSTER_URL", raising=False)
    yield state
    server.shutdown()
    server.server_close()


def _run(url):
    return CliRunner().invoke(bf.backfill, ["--from", "2025-11-24", "--to", "2025-11-25", "--asset", "options",
                                            "--no-wait", "--url", url])


def _one_error_line(res, code=1):
    assert res.exit_code == code, res.output
    assert not res.exception or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output and SECRET not in res.output, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.output
    return lines[0]


def test_a_password_in_the_url_is_used_but_never_printed(fake):
    url = f"http://admin:{SECRET}@127.0.0.1:{fake.port}"
    res = _run(url)
    assert res.exit_code == 0, res.output
    assert res.output == f"backfill bf1: 2 sessions x 1 assets (options); http://127.0.0.1:{fake.port}/runs/b/bf1\n"
    path, auth, _ = fake.requests[0]
    assert path == "/graphql" and auth == "Basic " + base64.b64encode(f"admin:{SECRET}".encode()).decode()

    fake.raw = (500, "text/html", b"<html>\n<body>\n  Internal Server Error\n</body>\n</html>")
    line = _one_error_line(_run(url))
    assert line == (f"Error: http://127.0.0.1:{fake.port}/graphql answered HTTP 500: "
                    "<html> <body> Internal Server Error </body> </html>")

    fake.raw = (200, "application/json", json.dumps({"errors": [{"message": "Cannot query field"}]}).encode())
    assert _one_error_line(_run(url)) == f"Error: GraphQL error from http://127.0.0.1:{fake.port}/graphql: Cannot query field"

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    line = _one_error_line(_run(f"http://admin:{SECRET}@127.0.0.1:{dead}"))
    assert line.startswith(f"Error: cannot reach the Dagster webserver at http://127.0.0.1:{dead}: "), line


def test_a_token_in_the_query_stays_on_the_request_to_graphql_and_out_of_the_output(fake):
    res = _run(f"http://127.0.0.1:{fake.port}/dagster/?token={SECRET}")
    assert res.exit_code == 0 and SECRET not in res.output, res.output
    assert res.output.endswith(f"; http://127.0.0.1:{fake.port}/dagster/runs/b/bf1\n")
    assert fake.requests[0][0] == f"/dagster/graphql?token={SECRET}"


@pytest.mark.parametrize("answer, cause", [
    ({"__typename": "PartitionSetNotFoundError", "message": "Partition set x could not be found.",
      "partitionSetName": "x"}, "(PartitionSetNotFoundError): Partition set x could not be found."),
    ({"__typename": "RunConflict", "message": "a run with this id exists"}, "(RunConflict): a run with this id exists"),
    ({"__typename": "RunConfigValidationInvalid", "pipelineName": "__ASSET_JOB",
      "errors": [{"__typename": "FieldNotDefinedConfigError", "fieldName": "in_process",
                  "message": 'Received unexpected config entry "in_process" at path root:execution:config.'}]},
     '(RunConfigValidationInvalid): Received unexpected config entry "in_process" at path root:execution:config.'),
    ({"__typename": "InvalidStepError", "invalidStepKey": "options"}, "(InvalidStepError): invalid step options"),
    ({"__typename": "PythonError", "message": "DagsterInvariantViolationError: boom\n", "className": "X"},
     "(PythonError): DagsterInvariantViolationError: boom"),
])
def test_every_refusal_names_its_cause_on_one_line(fake, answer, cause):
    fake.launch = answer
    assert _one_error_line(_run(f"http://127.0.0.1:{fake.port}")) == f"Error: backfill refused {cause}"


@pytest.mark.parametrize("raw, said", [
    ((200, "text/html", b"<!doctype html>\n<title>Dagster</title>"),
     "answered HTTP 200 without a GraphQL JSON body (is --url the Dagster webserver?): <!doctype html> <title>Dagster</title>"),
    ((200, "application/json", b'{"data": null}'), 'answered a GraphQL body without data: {"data": null}'),
    ((200, "application/json", b"[]"), "without a GraphQL JSON body"),
])
def test_an_answer_that_is_not_graphql_is_one_line(fake, raw, said):
    fake.raw = raw
    line = _one_error_line(_run(f"http://127.0.0.1:{fake.port}"))
    assert line.startswith(f"Error: http://127.0.0.1:{fake.port}/graphql ") and said in line, line


@pytest.mark.parametrize("url", [f"http://admin:{SECRET}@127.0.0.1:abc", "localhost:3000", "ftp://127.0.0.1:3000", "http://"])
def test_a_url_that_is_not_http_exits_2_before_anything_is_sent(fake, url):
    res = _run(url)
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and SECRET not in res.output, res.output
    assert ("Invalid value for '--url': not an http:// or https:// URL with a host, such as http://127.0.0.1:3000"
            in " ".join(res.output.split())), res.output
    assert fake.requests == []


def test_a_failed_backfill_s_error_is_one_line(monkeypatch):
    def graphql(url, query, variables, client):
        if "launchPartitionBackfill" in query:
            return {"launchPartitionBackfill": {"__typename": "LaunchBackfillSuccess", "backfillId": "b1"}}
        return {"partitionBackfillOrError": {
            "__typename": "PartitionBackfill", "id": "b1", "status": "FAILED", "numPartitions": 2,
            "error": {"message": "DagsterUserCodeUnreachableError: Could not reach user code server.\n\n"
                                 "  Stack Trace:\n    File x"},
            "assetBackfillData": {"assetBackfillStatuses": []}}}

    monkeypatch.setattr(bf, "_graphql", graphql)
    monkeypatch.setattr(bf, "utcnow", lambda: NOW)
    monkeypatch.delenv("ARCHIVE_START_DATE", raising=False)
    res = CliRunner().invoke(bf.backfill, ["--from", "2025-11-24", "--to", "2025-11-25", "--asset", "options",
                                           "--url", "http://127.0.0.1:9"])
    assert res.exit_code == 1, res.output
    assert res.output.splitlines()[-1] == ("Error: backfill b1 ended FAILED: DagsterUserCodeUnreachableError: "
                                           "Could not reach user code server. Stack Trace: File x"), res.output
