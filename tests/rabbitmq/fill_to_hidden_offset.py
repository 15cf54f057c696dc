#!/usr/bin/python3
"""Publishes messages of no source to an existing stream, one confirmed message a chunk, with pika
(a client that is not annal's), until the newest message's offset is DISTANCE past an offset
between two of them that no AMQP consumer is given: one that RabbitMQ's stream took for its own bookkeeping (the writers'
snapshot at the start of each segment, so a policy of small segments makes them common).
Prints that offset and the newest's: HIDDEN NEWEST. Exits 1 if none was found in LIMIT messages.

Usage: fill_to_hidden_offset.py URL STREAM DISTANCE [LIMIT]
"""
import random
import sys

import pika


def main():
    url, stream, distance = sys.argv[1], sys.argv[2], int(sys.argv[3])
    limit = int(sys.argv[4]) if len(sys.argv) > 4 else 20000
    connection = pika.BlockingConnection(pika.URLParameters(url))
    publisher = connection.channel()
    publisher.confirm_delivery()
    reader = connection.channel()
    reader.basic_qos(prefetch_count=100)  # streams require a prefetch
    deliveries = reader.consume(stream, arguments={"x-stream-offset": "first"}, inactivity_timeout=60)
    hidden = set()
    newest = None
    for published in range(limit):
        # Confirmed before the next is published, so that each message is a chunk of its own and
        # the newest chunk holds only the newest message.
        # Of varying length, so that the segments hold varying counts of them and the offsets taken
        # at their starts are not all the same distance apart (a distance dividing DISTANCE).
        publisher.basic_publish("", stream, b"f" * random.randint(1, 400), pika.BasicProperties(headers={"filler": published}),
                                mandatory=True)
        while True:
            method, properties, _body = next(deliveries)
            if method is None:
                sys.stderr.write("fill_to_hidden_offset.py: message %d was not delivered\n" % published)
                return 1
            reader.basic_ack(method.delivery_tag)
            offset = properties.headers["x-stream-offset"]
            if newest is not None:  # among the fillers: no message of another source comes after
                hidden.update(range(newest + 1, offset))
            if "filler" in (properties.headers or {}):
                newest = offset
            if (properties.headers or {}).get("filler") == published:
                break
        if newest - distance in hidden:
            print(newest - distance, newest)
            connection.close()
            return 0
    sys.stderr.write("fill_to_hidden_offset.py: no hidden offset %d before the newest in %d messages\n"
                     % (distance, limit))
    return 1


if __name__ == "__main__":
    sys.exit(main())
