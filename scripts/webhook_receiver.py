#!/usr/bin/env python3
"""A company's webhook receiver, for the tests and bench/webhooks.py.

Every delivery is verified with `standardwebhooks`, the Standard Webhooks
specification's reference implementation (PyPI), never with our own code, against
each secret configured for its endpoint, and logged. How an endpoint answers is set
per endpoint (the URL path's first segment names it):

    POST /_configure/<name>  {"secrets": ["whsec_..."], "behaviour": "ok",
                              "then": ["status:500", ...]}   answers consumed first
    GET  /_log/<name>        the deliveries it received, oldest first (JSON)
    GET  /_count             {"<name>": n, ...}

Behaviours: ok (200), status:N, retry-after:S (429 with Retry-After: S), gone (410),
hang (never answers), reset (closes the connection with a TCP reset), redirect (302).

Prints the port it listens on (127.0.0.1, an ephemeral one unless --port) as its
first line. asyncio with keep-alive: a few thousand deliveries a second on one core.
"""
import argparse
import asyncio
import json
import os
import signal
import socket
import struct
import sys
import time

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


class Endpoint:
    def __init__(self):
        self.secrets = []
        self.behaviour = "ok"
        self.then = []
        self.log = []
        self.count = 0


endpoints = {}
quiet = False


def endpoint(name):
    if name not in endpoints:
        endpoints[name] = Endpoint()
    return endpoints[name]


async def read_request(reader):
    line = await reader.readline()
    if not line:
        return None
    method, target, _ = line.decode("latin-1").split(" ", 2)
    headers = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return method, target, headers, body


def response(status, body=b"", extra=()):
    reasons = {200: "OK", 302: "Found", 404: "Not Found", 410: "Gone", 429: "Too Many Requests"}
    head = [f"HTTP/1.1 {status} {reasons.get(status, 'Status')}", f"Content-Length: {len(body)}"]
    head += [f"{name}: {value}" for name, value in extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def record(name, headers, body):
    target = endpoint(name)
    target.count += 1
    entry = {
        "receivedAt": time.time(),
        "id": headers.get("webhook-id"),
        "timestamp": headers.get("webhook-timestamp"),
        "signatures": len(headers.get("webhook-signature", "").split()),
    }
    if not quiet:
        verified = []
        for secret in target.secrets:
            try:
                Webhook(secret).verify(body, headers)
                verified.append(True)
            except WebhookVerificationError:
                verified.append(False)
        entry["verified"] = verified
        try:
            entry["body"] = json.loads(body)
        except ValueError:
            entry["body"] = None
        entry["userAgent"] = headers.get("user-agent")
    target.log.append(entry)


async def handle(reader, writer):
    try:
        while True:
            request = await read_request(reader)
            if request is None:
                break
            method, target, headers, body = request
            parts = target.split("?")[0].strip("/").split("/")
            if parts[0] == "_configure" and len(parts) == 2:
                config = json.loads(body or b"{}")
                entry = endpoint(parts[1])
                entry.secrets = config.get("secrets", entry.secrets)
                entry.behaviour = config.get("behaviour", entry.behaviour)
                entry.then = list(config.get("then", []))
                writer.write(response(200, b"{}"))
            elif parts[0] == "_log" and len(parts) == 2:
                writer.write(response(200, json.dumps(endpoint(parts[1]).log).encode()))
            elif parts[0] == "_count":
                writer.write(response(200, json.dumps({name: e.count for name, e in endpoints.items()}).encode()))
            elif method == "POST":
                entry = endpoint(parts[0])
                record(parts[0], headers, body)
                behaviour = entry.then.pop(0) if entry.then else entry.behaviour
                if behaviour == "hang":
                    await asyncio.sleep(3600)
                    break
                if behaviour == "reset":
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                    return
                if behaviour == "ok":
                    writer.write(response(200, b"ok"))
                elif behaviour == "gone":
                    writer.write(response(410, b"gone"))
                elif behaviour == "redirect":
                    writer.write(response(302, b"", [("Location", "http://127.0.0.1:9/elsewhere")]))
                elif behaviour.startswith("retry-after:"):
                    writer.write(response(429, b"slow down", [("Retry-After", behaviour.split(":", 1)[1])]))
                elif behaviour.startswith("status:"):
                    writer.write(response(int(behaviour.split(":", 1)[1]), b"failure \x00\x1b[31m" + b"x" * 1000))
                else:
                    writer.write(response(500, f"unknown behaviour {behaviour}".encode()))
            else:
                writer.write(response(404))
            await writer.drain()
            if headers.get("connection", "").lower() == "close":
                break
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        if not writer.is_closing():
            writer.close()


async def main():
    global quiet
    # A parent that ignores SIGTERM (a Swift service process does) passes that on through
    # exec: take the default back, so being told to stop stops it.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="log only ids and times (benchmarks)")
    parser.add_argument("--port-file", help="also write the port to this file (once listening)")
    arguments = parser.parse_args()
    quiet = arguments.quiet
    server = await asyncio.start_server(handle, "127.0.0.1", arguments.port, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print(port, flush=True)
    if arguments.port_file:
        with open(arguments.port_file + ".tmp", "w") as file:
            file.write(str(port))
        os.rename(arguments.port_file + ".tmp", arguments.port_file)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
