#!/usr/bin/env python3
"""A real SMTP server on loopback for tests/smtp_notifier.rs: aiosmtpd on a free port.

Prints `ready <port>` once it listens, then one JSON line per message received:
{"from": …, "to": [...], "subject": …, "body": …}. Runs until killed or stdin closes.
"""
import asyncio
import email
import email.policy
import json
import socket
import sys
import threading

from aiosmtpd.controller import Controller


class Sink:
    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        print(json.dumps({
            "from": envelope.mail_from,
            "to": list(envelope.rcpt_tos),
            "subject": str(message["subject"]),
            "body": message.get_content() if not message.is_multipart() else "",
        }), flush=True)
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    port = free_port()
    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    print(f"ready {port}", flush=True)
    # Until the test closes our stdin (or kills us).
    sys.stdin.read()
    controller.stop()


if __name__ == "__main__":
    main()
