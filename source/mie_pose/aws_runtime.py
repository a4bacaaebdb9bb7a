"""The AWS side of the operator runtime: S3 storage and the DynamoDB dataplane, configured from the environment.

Configuration lives here and nowhere else. The Lambda functions of ``deployment/mie-pose.yaml`` set:

- ``ASSETS_TABLE``, ``EXECUTIONS_TABLE``, ``METADATA_TABLE``: the dataplane's DynamoDB tables.
- ``DATAPLANE_BUCKET``: where pages too large for a DynamoDB item go.
- ``WORKFLOW_TABLE``: the registry of operators, stages and workflows (API only).
- ``STATE_MACHINE_ARN``: the workflow's Step Functions state machine (API and upload trigger only).
- ``ENDPOINT_NAME``: the SageMaker inference pipeline (pose step only).
- ``FANOUT_STATE_MACHINE_ARN``: where the operators' start Lambdas run their fan-out (operators only).
- ``DATAPLANE_API_ENDPOINT``: extension mode only, an existing MIE's dataplane API (operators only).

boto3 is in every Lambda runtime; it is imported lazily so the local package never needs it.
"""

from __future__ import annotations

import functools
import os

from .operators.runtime import OperatorRuntime


class MissingSetting(RuntimeError):
    """An environment variable the AWS runtime needs is not set."""


def setting(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise MissingSetting(f"environment variable {name} is not set")
    return value


@functools.lru_cache(maxsize=None)
def client(service: str):
    """One boto3 client per service and process (Lambda reuses them across warm invocations)."""
    import boto3  # noqa: PLC0415

    return boto3.client(service, region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"))


@functools.lru_cache(maxsize=1)
def s3_presigner():
    """An S3 client for presigned URLs a browser fetches directly: SigV4, virtual-hosted, this region."""
    import boto3  # noqa: PLC0415
    from botocore.config import Config  # noqa: PLC0415

    return boto3.client("s3", region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
                        config=Config(signature_version="s3v4", s3={"addressing_style": "virtual"}))


def reset_clients() -> None:
    """Forget cached clients (tests switch regions and mocks)."""
    client.cache_clear()
    s3_presigner.cache_clear()


def storage_from_environment():
    from .storage.s3 import S3Storage  # noqa: PLC0415

    return S3Storage(client("s3"))


def dataplane_from_environment():
    """The stack's own DynamoDB dataplane, or (extension mode, ``DATAPLANE_API_ENDPOINT`` set) the existing
    MIE's dataplane API, which the operators write their results to."""
    if os.environ.get("DATAPLANE_API_ENDPOINT"):
        from .aws.api_client import MieDataplane  # noqa: PLC0415

        return MieDataplane(os.environ["DATAPLANE_API_ENDPOINT"])
    from .dataplane.dynamodb import DynamoDataplane  # noqa: PLC0415

    return DynamoDataplane(client("dynamodb"), assets_table=setting("ASSETS_TABLE"),
                           executions_table=setting("EXECUTIONS_TABLE"), metadata_table=setting("METADATA_TABLE"),
                           bucket=os.environ.get("DATAPLANE_BUCKET"), s3_client=client("s3"),
                           registry_table=os.environ.get("WORKFLOW_TABLE"))


def runtime_from_environment() -> OperatorRuntime:
    return OperatorRuntime(storage=storage_from_environment(), dataplane=dataplane_from_environment())
