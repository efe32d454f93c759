"""Docker-free local invoke: run the `sam build` artifact under the real Lambda Runtime Interface Client.

A small stub of the Lambda Runtime API listens on 127.0.0.1; `python -m awslambdaric <handler>` runs in a fresh
process with the artifact folder as its code root and the function's env file, fetches the event, and posts the
handler's response (or the runtime's error shape) back. This checks what in-process tests cannot: the handler
string, the native wheels in the artifact, JSON serialization and the real error shape.

Each answer is printed (forwarded or the status, and the reason code) and compared with what the event's name says
should happen (EXPECTED); any difference, or a runtime error, makes the exit status non-zero. An event with another
name is shown but not checked. `--minted DIR` swaps sample events for the freshly minted copies in DIR (and uses
DIR/env.json), so expired committed tokens never turn every answer into a 401.

    python -m devtools.invoke --artifact .aws-sam/build-x86_64/InterceptorFunction events/allowed-call.json ...
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from devtools import loopback

PREFIX = "/2018-06-01/runtime"
REASON = re.compile(r"\(reason: ([a-z_]+)\)")


@dataclass(frozen=True)
class Answer:
    """What the interceptor did with one event, in the terms its sample name promises."""

    outcome: str | int  # "forward", or the statusCode of a direct answer
    reason: str | None = None  # the reason code in an error or isError text
    user: str | None = None  # `_teleport_user` stamped into a forwarded tools/call

    def __str__(self) -> str:
        if self.outcome == "forward":
            return "forwarded" + (f" as {self.user}" if self.user else "")
        return f"answered {self.outcome}" + (f" ({self.reason})" if self.reason else "")


# What each sample event (devtools/events.py) must produce.
EXPECTED: dict[str, Answer] = {
    "initialize": Answer("forward"),
    "notification": Answer("forward"),
    "tools-list": Answer("forward"),
    "allowed-call": Answer("forward", user="alice"),
    "admin-update": Answer("forward", user="carol"),
    "denied-call": Answer(200, "policy_denied"),
    "bot-denied": Answer(200, "policy_denied"),
    "unknown-tool": Answer(200, "tool_unknown"),
    "spoofed-identity": Answer("forward", user="alice"),
    "expired-token": Answer(401, "token_expired"),
    "missing-token": Answer(401, "token_missing"),
    "missing-headers": Answer(500, "headers_missing"),
    "response-tools-list": Answer(200),
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


def invoke(
    artifact: Path, handler: str, env: dict[str, str], event: bytes, timeout_s: float = 60
) -> tuple[str, Any, str]:
    """Run one cold invocation; returns ("response" | "error" | "init_error", payload, what the runtime's process
    wrote to stdout and stderr)."""
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
    return kind, payload, log


def audit_records(log: str) -> list[dict[str, Any]]:
    """The audit records in the runtime's output: the lines that are JSON objects with `"message": "audit"`."""
    records = []
    for line in log.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("message") == "audit" and isinstance(entry.get("audit"), dict):
            records.append(entry["audit"])
    return records


def audit_problem(log: str, answer: Answer) -> str | None:
    """Why the invocation's audit trail is wrong, or None: exactly one record on stdout, as the real runtime's
    stdout (awslambdaric's `Unbuffered` wrapper) received it, naming the answer's reason when it has one."""
    records = audit_records(log)
    if len(records) != 1:
        return f"{len(records)} audit records on stdout, expected exactly one"
    if answer.reason is not None and records[0].get("reason") != answer.reason:
        return f"audit record says {records[0].get('reason')!r}, the answer {answer.reason!r}"
    return None


def answer_of(payload: Any) -> Answer:
    """Reads an interceptor output; raises (KeyError, TypeError, ValueError) when it breaks the contract."""
    if not isinstance(payload, dict) or payload.get("interceptorOutputVersion") != "1.0":
        raise ValueError("not an interceptor output")
    mcp = payload["mcp"]
    if "transformedGatewayResponse" in mcp:
        response = mcp["transformedGatewayResponse"]
        body = response["body"]
        texts = [body.get("error", {}).get("message", "")]
        texts += [c.get("text", "") for c in body.get("result", {}).get("content", [])]
        reasons = [m[1] for text in texts if (m := REASON.search(str(text)))]
        return Answer(int(response["statusCode"]), reasons[0] if reasons else None)
    body = mcp["transformedGatewayRequest"]["body"]
    user = body["params"]["arguments"].get("_teleport_user") if body["method"] == "tools/call" else None
    return Answer("forward", user=user)


def sources(events: list[Path], env_file: Path, minted: Path | None) -> tuple[list[Path], Path]:
    """The event files to run and their env file: sample events replaced by their freshly minted copies."""
    if minted is None:
        return events, env_file
    fresh = [minted / e.name if e.stem in EXPECTED and (minted / e.name).is_file() else e for e in events]
    return fresh, minted / "env.json"


def verdict(name: str, answer: Answer) -> tuple[str, str]:
    """("ok" | "FAIL" | "??", explanation) for the answer to the event called `name`."""
    expected = EXPECTED.get(name)
    if expected is None:
        return "??", f"{answer} (no expectation for '{name}': not checked)"
    if answer != expected:
        return "FAIL", f"{answer}, expected {expected}"
    return "ok", str(answer)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("events", nargs="+", type=Path)
    parser.add_argument("--artifact", type=Path, default=Path(".aws-sam/build-x86_64/InterceptorFunction"))
    parser.add_argument("--handler", default="interceptor.app.lambda_handler")
    parser.add_argument("--env-file", type=Path, default=Path("events/env.json"))
    parser.add_argument("--function", default="InterceptorFunction", help="section of the env file")
    parser.add_argument("--minted", type=Path, help="folder of freshly minted sample events (make invoke/smoke)")
    parser.add_argument("--show", action="store_true", help="also print each full output")
    args = parser.parse_args()
    if not (args.artifact / "interceptor").is_dir():
        print(f"no build artifact at {args.artifact}: run 'make build' first", file=sys.stderr)
        return 2
    events, env_file = sources(args.events, args.env_file, args.minted)
    env = {k: str(v) for k, v in json.loads(env_file.read_text()).get(args.function, {}).items()}
    counts = {"ok": 0, "FAIL": 0, "??": 0}
    for path in events:
        kind, payload, log = invoke(args.artifact.resolve(), args.handler, env, path.read_bytes())
        if kind != "response":
            mark, text = "FAIL", f"runtime reported {kind}: {json.dumps(payload)}"
        else:
            try:
                answer = answer_of(payload)
                mark, text = verdict(path.stem, answer)
            except (KeyError, TypeError, ValueError, AttributeError) as error:
                mark, text = "FAIL", f"output breaks the interceptor contract ({error!r})"
            else:
                problem = audit_problem(log, answer)
                if problem is not None:
                    mark, text = "FAIL", problem
        counts[mark] += 1
        print(f"{mark:<4} {path}: {text}")
        if args.show:
            print(json.dumps(payload, indent=2))
    print(f"{counts['ok']} passed, {counts['FAIL']} failed" + (f", {counts['??']} not checked" if counts["??"] else ""))
    return 1 if counts["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
