"""Docker-free local invoke: run the `sam build` artifact under the real Lambda Runtime Interface Client.

A small stub of the Lambda Runtime API listens on 127.0.0.1; `python -m awslambdaric <handler>` runs in a fresh
process with the artifact folder as its code root and the function's env file, fetches the event, and posts the
handler's response (or the runtime's error shape) back. This checks what in-process tests cannot: the handler
string, the native wheels in the artifact, JSON serialization and the real error shape.

    python -m devtools.invoke --artifact .aws-sam/build-x86_64/InterceptorFunction events/allowed-call.json ...
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from devtools import loopback

PREFIX = "/2018-06-01/runtime"
# What each sample event must produce: "forward", or the statusCode of the direct answer.
EXPECTED: dict[str, str | int] = {
    "initialize": "forward",
    "notification": "forward",
    "tools-list": "forward",
    "allowed-call": "forward",
    "admin-update": "forward",
    "denied-call": 200,
    "bot-denied": 200,
    "unknown-tool": 200,
    "spoofed-identity": "forward",
    "expired-token": 401,
    "missing-token": 401,
    "missing-headers": 500,
    "response-tools-list": 200,
}


class RuntimeApi:
    """Serves one queued event per `next` call and collects what the runtime posts back."""

    def __init__(self) -> None:
        self.events: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.results: queue.Queue[tuple[str, str, Any]] = queue.Queue()

    @contextmanager
    def serve(self) -> Iterator[str]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # the runtime client keeps its connection open

            def do_GET(self) -> None:
                if self.path != f"{PREFIX}/invocation/next":
                    self.send_error(404)
                    return
                request_id, body = api.events.get()
                self.send_response(200)
                self.send_header("Lambda-Runtime-Aws-Request-Id", request_id)
                self.send_header("Lambda-Runtime-Deadline-Ms", "9999999999999")
                self.send_header(
                    "Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:local"
                )
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                payload = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                parts = self.path.removeprefix(PREFIX).strip("/").split("/")
                kind = "init_error" if parts[:2] == ["init", "error"] else parts[-1]
                request_id = parts[1] if parts[0] == "invocation" else ""
                api.results.put((kind, request_id, json.loads(payload or b"null")))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # the runtime is killed mid-connection after each invocation

        with loopback.serve(Handler, Server) as address:
            yield address


def invoke(artifact: Path, handler: str, env: dict[str, str], event: bytes, timeout_s: float = 60) -> tuple[str, Any]:
    """Run one cold invocation; returns ("response" | "error" | "init_error", payload)."""
    api = RuntimeApi()
    with api.serve() as address:
        request_id = str(uuid.uuid4())
        api.events.put((request_id, event))
        child_env = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": str(artifact),
            "LAMBDA_TASK_ROOT": str(artifact),
            "AWS_LAMBDA_RUNTIME_API": address,
            "AWS_LAMBDA_FUNCTION_NAME": "local",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
            "AWS_REGION": "us-east-1",
            "_HANDLER": handler,
            **env,
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "awslambdaric", handler],
            cwd=artifact,
            env=child_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            kind, _, payload = api.results.get(timeout=timeout_s)
        except queue.Empty:
            kind, payload = "timeout", None
        finally:
            process.kill()
            log = process.communicate()[0].decode(errors="replace")
    if kind != "response":
        sys.stderr.write(log)
    return kind, payload


def outcome(payload: Any) -> str | int:
    """ "forward" or the statusCode of a direct answer; raises when the output breaks the contract."""
    if not isinstance(payload, dict) or payload.get("interceptorOutputVersion") != "1.0":
        raise ValueError("not an interceptor output")
    mcp = payload["mcp"]
    if "transformedGatewayResponse" in mcp:
        return int(mcp["transformedGatewayResponse"]["statusCode"])
    mcp["transformedGatewayRequest"]["body"]["method"]
    return "forward"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("events", nargs="+", type=Path)
    parser.add_argument("--artifact", type=Path, default=Path(".aws-sam/build-x86_64/InterceptorFunction"))
    parser.add_argument("--handler", default="interceptor.app.lambda_handler")
    parser.add_argument("--env-file", type=Path, default=Path("events/env.json"))
    parser.add_argument("--function", default="InterceptorFunction", help="section of the env file")
    parser.add_argument("--check", action="store_true", help="fail unless each sample event gives its expected outcome")
    args = parser.parse_args()
    if not (args.artifact / "interceptor").is_dir():
        print(f"no build artifact at {args.artifact}: run 'make build' first", file=sys.stderr)
        return 2
    env = {k: str(v) for k, v in json.loads(args.env_file.read_text()).get(args.function, {}).items()}
    failures = 0
    for path in args.events:
        kind, payload = invoke(args.artifact.resolve(), args.handler, env, path.read_bytes())
        if kind != "response":
            print(f"FAIL {path.name}: runtime reported {kind}: {json.dumps(payload)}")
            failures += 1
            continue
        got = outcome(payload)
        expected = EXPECTED.get(path.stem)
        ok = not args.check or got == expected
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {path.name}: {got}" + ("" if ok else f" (expected {expected})"))
        if not args.check:
            print(json.dumps(payload, indent=2))
    print(f"{len(args.events) - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
