#!/usr/bin/python3
"""Publishes one message that looks like annal's but whose annal.id is not an id, with pika (a
client that is not annal's), to an existing stream: the reader must call it corruption.

Usage: publish_message.py URL STREAM
"""
import sys

import pika


def main():
    url, stream = sys.argv[1], sys.argv[2]
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.confirm_delivery()
    headers = {"annal.sequence": 1, "annal.version": 0, "annal.type": "Counted", "annal.stream": "s",
               "annal.timestamp_ns": 1, "annal.source": "forger", "annal.id": "not-an-id"}
    channel.basic_publish("", stream, b"x", pika.BasicProperties(headers=headers), mandatory=True)
    connection.close()


if __name__ == "__main__":
    main()
