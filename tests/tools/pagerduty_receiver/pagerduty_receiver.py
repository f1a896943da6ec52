#!/usr/bin/env python3
"""A local stand-in for PagerDuty's Events API v2, for tests (loopback only, stdlib only).

    pagerduty_receiver.py [--host 127.0.0.1] [--port 0] [--record FILE]

Prints "LISTENING <port>" on stdout once it accepts connections, then serves:

  POST /v2/enqueue   validates the event the way PagerDuty does and answers like it:
                     202 {"status":"success","message":"Event processed","dedup_key":"…"}
                     400 {"status":"invalid event","message":"Event object is invalid",
                          "errors":["…"]}
                     (the 400 error strings follow PagerDuty's wording where it is documented,
                     e.g. "Length of 'routing_key' is incorrect (should be 32 characters)";
                     the others are modelled on it)
  POST <any other>   a generic webhook: 200 {"ok":true}
  POST /control      scripts failures, JSON body:
                       {"mode": "ok" | "500" | "503" | "429" | "400",
                        "retry_after": 7 | "Wed, 21 Oct 2026 07:28:00 GMT",  (optional header)
                        "count": N,    (optional: fail N requests, then back to "ok")
                        "delay": S}    (optional: wait S seconds before every answer)
                     Failure modes apply to /v2/enqueue and webhooks alike; a failed request
                     is recorded with its status but is not "processed".
  GET  /events       every request received so far (JSON array, oldest first)
  DELETE /events     forgets them
  GET  /health       200

Every request to /v2/enqueue or a webhook path is recorded as one JSON object
{"seq","received","path","status","headers","body"} (body parsed, or "raw" when not JSON);
with --record it is also appended to FILE as one JSON line, flushed at once.
"""

import argparse
import datetime
import json
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SEVERITIES = ("critical", "error", "warning", "info")
ACTIONS = ("trigger", "acknowledge", "resolve")
MAX_BODY = 512 * 1024  # PagerDuty: "Events API payloads are limited to 512 KB"


def blank(v):
    return not isinstance(v, str) or not v.strip()


def parse_iso8601(s):
    # PagerDuty documents ISO 8601 (its own example: 2015-07-17T08:42:58.315+0000).
    try:
        datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
        return True
    except ValueError:
        pass
    try:
        datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%f%z")
        return True
    except ValueError:
        return False


def validate(event):
    """The list of PagerDuty-style error strings for an event; empty when it is valid."""
    if not isinstance(event, dict):
        return ["Event object must be a JSON object"]
    errors = []
    key = event.get("routing_key")
    if blank(key):
        errors.append("'routing_key' is missing or blank")
    elif len(key) != 32:
        errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    action = event.get("event_action")
    if blank(action):
        errors.append("'event_action' is missing or blank")
    elif action not in ACTIONS:
        errors.append("'event_action' is invalid (must be one of the following: "
                      "'trigger', 'acknowledge' or 'resolve')")
    dedup = event.get("dedup_key")
    if dedup is not None and not isinstance(dedup, str):
        errors.append("'dedup_key' must be a string")
    elif isinstance(dedup, str) and len(dedup) > 255:
        errors.append("Length of 'dedup_key' is incorrect (should be at most 255 characters)")
    if action in ("acknowledge", "resolve") and blank(dedup):
        errors.append("'dedup_key' is missing or blank")
    if action == "trigger":
        payload = event.get("payload")
        if not isinstance(payload, dict):
            errors.append("'payload' is missing or blank")
            return errors
        summary = payload.get("summary")
        if blank(summary):
            errors.append("'payload.summary' is missing or blank")
        elif len(summary) > 1024:
            errors.append("Length of 'payload.summary' is incorrect "
                          "(should be at most 1024 characters)")
        if blank(payload.get("source")):
            errors.append("'payload.source' is missing or blank")
        severity = payload.get("severity")
        if blank(severity):
            errors.append("'payload.severity' is missing or blank")
        elif severity not in SEVERITIES:
            errors.append("'payload.severity' is invalid (must be one of the following: "
                          "'critical', 'warning', 'error' or 'info')")
        ts = payload.get("timestamp")
        if ts is not None and (not isinstance(ts, str) or not parse_iso8601(ts)):
            errors.append("'payload.timestamp' is invalid (should be an ISO 8601 timestamp)")
        for field in ("component", "group", "class"):
            if field in payload and not isinstance(payload[field], str):
                errors.append(f"'payload.{field}' must be a string")
        details = payload.get("custom_details")
        if details is not None and not isinstance(details, (dict, str)):
            errors.append("'payload.custom_details' must be an object")
    return errors


class State:
    """What /control set and what has been received; shared by the handler threads."""

    def __init__(self, record_path):
        self.lock = threading.Lock()
        self.mode = "ok"
        self.retry_after = None
        self.count = None
        self.delay = 0.0
        self.events = []
        self.record = open(record_path, "a", encoding="utf-8") if record_path else None

    def failure(self):
        """The failure mode for the next request ("ok" for none), consuming one of `count`."""
        with self.lock:
            mode, retry_after = self.mode, self.retry_after
            if mode != "ok" and self.count is not None:
                self.count -= 1
                if self.count <= 0:
                    self.mode, self.count, self.retry_after = "ok", None, None
            return mode, retry_after, self.delay

    def add(self, entry):
        with self.lock:
            entry["seq"] = len(self.events) + 1
            self.events.append(entry)
            if self.record:
                self.record.write(json.dumps(entry, sort_keys=True) + "\n")
                self.record.flush()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as PagerDuty's front end allows
    server_version = "pagerduty-receiver"
    state = None  # set in main()

    def log_message(self, fmt, *args):
        sys.stderr.write("pagerduty_receiver: " + (fmt % args) + "\n")

    def reply(self, status, obj, headers=()):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            return None
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def do_GET(self):
        if self.path == "/health":
            self.reply(200, {"ok": True})
        elif self.path == "/events":
            with self.state.lock:
                events = list(self.state.events)
            self.reply(200, events)
        else:
            self.reply(404, {"error": "not found"})

    def do_DELETE(self):
        if self.path == "/events":
            with self.state.lock:
                self.state.events.clear()
            self.reply(200, {"ok": True})
        else:
            self.reply(404, {"error": "not found"})

    def do_POST(self):
        raw = self.read_body()
        if raw is None:
            self.reply(411, {"error": "Content-Length required"})
            return
        if self.path == "/control":
            self.control(raw)
            return
        mode, retry_after, delay = self.state.failure()
        if delay:
            time.sleep(delay)
        entry = {"received": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                 "path": self.path,
                 "headers": {k.lower(): v for k, v in self.headers.items()}}
        try:
            entry["body"] = json.loads(raw)
        except ValueError:
            entry["raw"] = raw.decode("utf-8", "replace")
        status, obj, headers = self.answer(mode, retry_after, entry, len(raw))
        entry["status"] = status
        self.state.add(entry)
        self.reply(status, obj, headers)

    def answer(self, mode, retry_after, entry, size):
        headers = [("Retry-After", str(retry_after))] if retry_after is not None else []
        if mode == "429":
            return 429, {"status": "throttle event",
                         "message": "Requests for this service are arriving too quickly. "
                                    "Please retry later."}, headers
        if mode in ("500", "503"):
            return int(mode), {"status": "error", "message": "Internal Server Error"}, headers
        if mode == "400":
            return 400, {"status": "invalid event", "message": "Event object is invalid",
                         "errors": ["rejected by /control"]}, []
        if self.path != "/v2/enqueue":
            return 200, {"ok": True}, []  # a webhook
        if size > MAX_BODY:
            errors = ["Event object is too large (limit 512 KB)"]
        elif "body" not in entry:
            errors = ["Event object must be valid JSON"]
        else:
            errors = validate(entry["body"])
        if errors:
            return 400, {"status": "invalid event", "message": "Event object is invalid",
                         "errors": errors}, []
        event = entry["body"]
        dedup = event.get("dedup_key") or uuid.uuid4().hex
        return 202, {"status": "success", "message": "Event processed", "dedup_key": dedup}, []

    def control(self, raw):
        try:
            cmd = json.loads(raw)
            mode = str(cmd.get("mode", "ok"))
            if mode not in ("ok", "500", "503", "429", "400"):
                raise ValueError(f"unknown mode {mode!r}")
            count = cmd.get("count")
            delay = float(cmd.get("delay", 0))
        except (ValueError, AttributeError, TypeError) as e:
            self.reply(400, {"error": str(e)})
            return
        with self.state.lock:
            self.state.mode = mode
            self.state.retry_after = cmd.get("retry_after")
            self.state.count = int(count) if count is not None else None
            self.state.delay = delay
        self.reply(200, {"mode": mode})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 = an ephemeral port (printed)")
    ap.add_argument("--record", help="append every received request to FILE as JSON lines")
    args = ap.parse_args()
    Handler.state = State(args.record)
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    print(f"LISTENING {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
