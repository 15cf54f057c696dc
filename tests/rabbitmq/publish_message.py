#!/usr/bin/python3
"""Publishes one message with pika (a client that is not annal's) to an existing stream: without
MARKER, one that looks like annal's but whose annal.id is not an id (the reader must call it
corruption); with MARKER, an event of type End whose annal.stream is MARKER, that a test reads up
to to know it has read everything published before it; with --as, a well-formed event of SOURCE
at SEQUENCE (a number; anything else is sent as text), as another exporter under that source
would publish it.

Usage: publish_message.py URL STREAM [MARKER | --as SOURCE SEQUENCE]
"""
import sys

import pika


def main():
    url, stream = sys.argv[1], sys.argv[2]
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.confirm_delivery()
    if len(sys.argv) > 5 and sys.argv[3] == "--as":
        sequence = int(sys.argv[5]) if sys.argv[5].isdigit() else sys.argv[5]  # text: a damaged one
        headers = {"annal.sequence": sequence, "annal.version": 0, "annal.type": "Counted",
                   "annal.stream": "s", "annal.timestamp_ns": 1, "annal.source": sys.argv[4]}
    elif len(sys.argv) > 3:
        headers = {"annal.sequence": 1, "annal.version": 0, "annal.type": "End", "annal.stream": sys.argv[3],
                   "annal.timestamp_ns": 1, "annal.source": "end-" + sys.argv[3]}
    else:
        headers = {"annal.sequence": 1, "annal.version": 0, "annal.type": "Counted", "annal.stream": "s",
                   "annal.timestamp_ns": 1, "annal.source": "forger", "annal.id": "not-an-id"}
    channel.basic_publish("", stream, b"x", pika.BasicProperties(headers=headers), mandatory=True)
    connection.close()


if __name__ == "__main__":
    main()
