#!/usr/bin/python3
"""Reads a RabbitMQ stream with pika (python3-pika), an AMQP 0-9-1 client that is not annal's,
from its first message to the COUNT-th, and prints one line per message:
    OFFSET SEQUENCE SOURCE STREAM
from the x-stream-offset and annal.* headers ('-' where a header is absent). Exits 1 if COUNT
messages did not come within TIMEOUT seconds of the last one.

Usage: read_stream.py URL STREAM COUNT [TIMEOUT]
"""
import sys

import pika


def main():
    url, stream, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 60.0
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=1000)  # streams require a prefetch
    read = 0
    lines = []
    for method, properties, _body in channel.consume(stream, arguments={"x-stream-offset": 0},
                                                     inactivity_timeout=timeout):
        if method is None:
            break
        headers = properties.headers or {}
        lines.append("%s %s %s %s" % (headers.get("x-stream-offset", "-"), headers.get("annal.sequence", "-"),
                                      headers.get("annal.source", "-"), headers.get("annal.stream", "-")))
        channel.basic_ack(method.delivery_tag)
        read += 1
        if read == count:
            break
    channel.cancel()
    connection.close()
    sys.stdout.write("\n".join(lines) + ("\n" if lines else ""))
    if read != count:
        sys.stderr.write("read_stream.py: %d of %d messages of stream %s\n" % (read, count, stream))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
