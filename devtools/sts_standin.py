"""A local STS for the demo: moto answers `sts:AssumeRole`, and each request is recorded as it was sent.

moto keeps neither session tags nor SourceIdentity, so the recording is taken from the outgoing request itself
(botocore's `before-call` event, after serialization): it shows exactly what AWS would receive.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from unittest import mock

import boto3
from moto import mock_aws

_TAG_FIELD = re.compile(r"Tags\.member\.(\d+)\.(Key|Value)")
_TRANSITIVE_FIELD = re.compile(r"TransitiveTagKeys\.member\.(\d+)")


@dataclass(frozen=True)
class AssumeRoleRequest:
    """The parameters of one `sts:AssumeRole` request, read back from its wire form."""

    role_arn: str
    session_name: str
    source_identity: str
    duration_s: int
    tags: list[tuple[str, str]]
    transitive_tag_keys: list[str]

    @classmethod
    def from_wire(cls, form: dict[str, Any]) -> AssumeRoleRequest:
        """Parse the query-protocol form (`Tags.member.1.Key`, ...); members are numbered from 1, in order."""
        tags: dict[int, dict[str, str]] = {}
        transitive: dict[int, str] = {}
        for name, value in form.items():
            if tag := _TAG_FIELD.fullmatch(name):
                tags.setdefault(int(tag[1]), {})[tag[2]] = value
            elif key := _TRANSITIVE_FIELD.fullmatch(name):
                transitive[int(key[1])] = value
        return cls(
            role_arn=form["RoleArn"],
            session_name=form["RoleSessionName"],
            source_identity=form.get("SourceIdentity", ""),
            duration_s=int(form.get("DurationSeconds", 3600)),
            tags=[(tags[n]["Key"], tags[n]["Value"]) for n in sorted(tags)],
            transitive_tag_keys=[transitive[n] for n in sorted(transitive)],
        )


@contextmanager
def local_sts() -> Iterator[list[AssumeRoleRequest]]:
    """moto's AWS with dummy credentials and no AWS config read, for the block; yields the AssumeRole requests
    sent meanwhile by any client made from boto3's default session (the one `boto3.client` uses)."""
    sent: list[AssumeRoleRequest] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        sent.append(AssumeRoleRequest.from_wire(params["body"]))

    previous_session = boto3.DEFAULT_SESSION
    with mock.patch.dict(os.environ):
        for name in [n for n in os.environ if n.startswith(("AWS_", "BOTO_"))]:
            del os.environ[name]  # a user's profile or endpoint must not leak into the demo
        os.environ.update(
            AWS_ACCESS_KEY_ID="demo",
            AWS_SECRET_ACCESS_KEY="demo",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_CONFIG_FILE=os.devnull,
            AWS_SHARED_CREDENTIALS_FILE=os.devnull,
            AWS_EC2_METADATA_DISABLED="true",
        )
        with mock_aws():
            boto3.setup_default_session()
            assert boto3.DEFAULT_SESSION is not None
            boto3.DEFAULT_SESSION.events.register("before-call.sts.AssumeRole", record)
            try:
                yield sent
            finally:
                boto3.DEFAULT_SESSION = previous_session
