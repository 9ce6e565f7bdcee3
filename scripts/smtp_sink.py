#!/usr/bin/env python3
"""A real SMTP server for the tests and benchmarks: aiosmtpd (PyPI), with STARTTLS and AUTH.

    smtp_sink.py --dir DIR [--port 0] [--user U --password P] [--no-tls] [--pipelining] [--eml | --no-store]

Listens on 127.0.0.1 (an ephemeral port unless --port). With TLS (the default) it makes a
self-signed certificate for 127.0.0.1 and localhost with `openssl` and offers STARTTLS;
with --user it requires AUTH (PLAIN or LOGIN, only after STARTTLS unless --no-tls).
Once listening it writes DIR/ready.json: {"port": N, "certificate": "DIR/cert.pem"}.

Each accepted message is written to DIR/messages/NNNNNN.json: {"from", "to", "data"
(the message as received, text), "tls", "authenticated", "connection" (a number per TCP
connection, to see reuse)}; with --eml, the message itself beside it as NNNNNN.eml (for a
mail client; `scripts/dev` uses it as a local mail catcher); with --no-store, nothing but a
count in DIR/count (benchmarks: {"messages": every 100th and the first, "connections":
the highest connection number then}). What it does depends on the recipient's local part:

    reject…  RCPT answered 550 (permanent)
    later…   RCPT answered 451 (temporary)
    slow…    the data's end answered after 5 s
    drop…    the connection closed after the data's end, without a reply (the message
             is still written, as a server that took it and lost the connection would)
    anything else: accepted (250)

aiosmtpd does not advertise PIPELINING (RFC 2920); --pipelining makes it do so, honestly,
since it reads commands in order from its buffer whether they came one by one or together.
"""
import argparse
import asyncio
import itertools
import json
import os
import signal
import socket
import ssl
import subprocess
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

counter = itertools.count(1)
connections = itertools.count(1)


class Handler:
    def __init__(self, directory, eml=False, store=True):
        self.directory = directory
        self.eml = eml
        self.store = store

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        # aiosmtpd leaves this to a handler that has the hook.
        session.host_name = hostname
        # One protocol instance per TCP connection (the session is renewed by STARTTLS).
        if not hasattr(server, "connection_number"):
            server.connection_number = next(connections)
        if getattr(server, "advertise_pipelining", False):
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0].lower()
        if local.startswith("reject"):
            return "550 5.1.1 No such user here"
        if local.startswith("later"):
            return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        number = next(counter)
        if not self.store:
            # Rewritten every 100 messages, and at once for the first: cheap enough for a
            # benchmark, exact at its end (read it after the sender has finished).
            if number % 100 == 0 or number == 1:
                write_atomically(os.path.join(self.directory, "count"), json.dumps(
                    {"messages": number, "connections": getattr(server, "connection_number", 0)}))
            return await self.answer(server, envelope, number)
        record = {
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "data": envelope.original_content.decode("utf-8", "replace"),
            "tls": session.ssl is not None,
            "authenticated": bool(session.authenticated),
            "connection": getattr(server, "connection_number", 0),
        }
        path = os.path.join(self.directory, "messages", "%06d.json" % number)
        with open(path + ".tmp", "w") as out:
            json.dump(record, out)
        os.rename(path + ".tmp", path)
        if self.eml:
            write_atomically(os.path.join(self.directory, "messages", "%06d.eml" % number),
                             envelope.original_content.decode("utf-8", "replace"))
        return await self.answer(server, envelope, number)

    async def answer(self, server, envelope, number):
        local = envelope.rcpt_tos[0].split("@")[0].lower() if envelope.rcpt_tos else ""
        if local.startswith("slow"):
            await asyncio.sleep(5)
        if local.startswith("drop"):
            server.transport.abort()
        return "250 2.0.0 Ok: queued as %06d" % number


def write_atomically(path, text):
    with open(path + ".tmp", "w") as out:
        out.write(text)
    os.rename(path + ".tmp", path)


def self_signed(directory):
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", key, "-out", cert],
        check=True, capture_output=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context, cert


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--no-tls", action="store_true")
    parser.add_argument("--pipelining", action="store_true")
    parser.add_argument("--eml", action="store_true")
    parser.add_argument("--no-store", action="store_true")
    args = parser.parse_args()
    if os.environ.get("SMTP_SINK_DEBUG"):
        import logging
        logging.basicConfig(level=logging.DEBUG)
    os.makedirs(os.path.join(args.dir, "messages"), exist_ok=True)

    context, certificate = (None, None) if args.no_tls else self_signed(args.dir)

    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == args.user \
            and auth_data.password.decode() == args.password
        # handled=False: aiosmtpd then answers 535 itself (True means "already answered").
        return AuthResult(success=ok, handled=False)

    class Sink(SMTP):
        advertise_pipelining = args.pipelining

    class SinkController(Controller):
        def factory(self):
            return Sink(
                self.handler, tls_context=context, require_starttls=context is not None and args.user is not None,
                authenticator=authenticate if args.user else None, auth_required=args.user is not None,
                auth_require_tls=context is not None, hostname="sink.test")

    # Bind the port first, so an ephemeral one is known before the controller starts.
    probe = socket.socket()
    probe.bind(("127.0.0.1", args.port))
    port = probe.getsockname()[1]
    probe.close()
    controller = SinkController(Handler(args.dir, eml=args.eml, store=not args.no_store), hostname="127.0.0.1", port=port)
    controller.start()
    with open(os.path.join(args.dir, "ready.json.tmp"), "w") as out:
        json.dump({"port": port, "certificate": certificate}, out)
    os.rename(os.path.join(args.dir, "ready.json.tmp"), os.path.join(args.dir, "ready.json"))
    # SIGTERM (the tests' stop) ends it like ^C, through the controller's stop.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        asyncio.run(asyncio.Event().wait())
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


if __name__ == "__main__":
    sys.exit(main())
