#!/usr/bin/env python3
"""Checks dev/scripts/emulator.py's patches to moto's SQS model (run by `make test`).

1. With the patch, queue attributes are the same as moto's own, for every kind of queue the
   patch distinguishes: standard, FIFO with content deduplication, and one with a redrive
   policy, a KMS key and a policy; through GetQueueAttributes and in the model.
2. A SendMessage no longer counts the queued messages (what made it O(queue depth)).
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")

import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402
from moto.sqs import models  # noqa: E402

import emulator  # noqa: E402


def queues(sqs) -> list[str]:  # type: ignore[no-untyped-def]
    dlq = sqs.create_queue(QueueName="dlq")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    fifo = sqs.create_queue(
        QueueName="jobs.fifo",
        Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"},
    )["QueueUrl"]
    redriven = sqs.create_queue(
        QueueName="jobs",
        Attributes={
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": "8"}),
            "KmsMasterKeyId": "alias/aws/sqs",
            "Policy": json.dumps({"Version": "2012-10-17", "Statement": []}),
        },
    )["QueueUrl"]
    urls = [dlq, fifo, redriven]
    for url in urls:
        group = {"MessageGroupId": "g"} if url.endswith(".fifo") else {}
        for _ in range(3):
            sqs.send_message(QueueUrl=url, MessageBody="x", **group)
    sqs.receive_message(QueueUrl=redriven, MaxNumberOfMessages=1)  # one in flight
    return urls


def read(sqs, urls: list[str]) -> list[dict]:  # type: ignore[no-untyped-def]
    named = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
             "RedrivePolicy", "VisibilityTimeout"]
    return [
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
        for url in urls
        for names in (["All"], named)
    ]


def main() -> int:
    original = models.Queue.attributes
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        urls = queues(sqs)
        before = read(sqs, urls)
        emulator.patch_moto_sqs()
        if models.Queue.attributes is original:
            print("check_emulator_patch: patch not applied (another moto version?)")
            return 1
        after = read(sqs, urls)
        if before != after:
            print(f"check_emulator_patch: GetQueueAttributes differs:\n{before}\n{after}")
            return 1
        backend = models.sqs_backends["123456789012"]["us-east-1"]
        for queue in backend.queues.values():
            if dict(original.fget(queue)) != dict(queue.attributes):
                print(f"check_emulator_patch: attributes of {queue.name} differ")
                return 1

        counts = 0
        messages = models.Queue.messages

        def counted(queue):  # type: ignore[no-untyped-def]
            nonlocal counts
            counts += 1
            return messages.fget(queue)

        models.Queue.messages = property(counted)
        try:
            sqs.send_message(QueueUrl=urls[0], MessageBody="y")
        finally:
            models.Queue.messages = messages
        if counts:
            print(f"check_emulator_patch: a SendMessage walked the queue {counts} times")
            return 1
    print(f"check_emulator_patch: ok ({len(urls)} queues, attributes equal, sends O(1))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
