"""The dataplane's DynamoDB tables and buckets on moto (the key schemas of deployment/mie-pose.yaml)."""

from __future__ import annotations

REGION = "us-east-1"


def create_dataplane_tables(boto3, buckets=("dp-bucket",)):
    """Create the assets, executions (with its asset index), metadata and workflow registry tables and the
    buckets; return (dynamodb client, s3 client)."""
    ddb = boto3.client("dynamodb", region_name=REGION)
    ddb.create_table(TableName="assets", KeySchema=[{"AttributeName": "asset_id", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "asset_id", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST")
    ddb.create_table(TableName="executions", KeySchema=[{"AttributeName": "execution_id", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "execution_id", "AttributeType": "S"},
                                           {"AttributeName": "asset_id", "AttributeType": "S"},
                                           {"AttributeName": "created", "AttributeType": "N"}],
                     GlobalSecondaryIndexes=[{"IndexName": "asset_id-created", "Projection": {"ProjectionType": "ALL"},
                                              "KeySchema": [{"AttributeName": "asset_id", "KeyType": "HASH"},
                                                            {"AttributeName": "created", "KeyType": "RANGE"}]}],
                     BillingMode="PAY_PER_REQUEST")
    ddb.create_table(TableName="metadata", KeySchema=[{"AttributeName": "asset_id", "KeyType": "HASH"},
                                                      {"AttributeName": "item", "KeyType": "RANGE"}],
                     AttributeDefinitions=[{"AttributeName": "asset_id", "AttributeType": "S"},
                                           {"AttributeName": "item", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST")
    ddb.create_table(TableName="workflows", KeySchema=[{"AttributeName": "name", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "name", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
    s3 = boto3.client("s3", region_name=REGION)
    for bucket in buckets:
        s3.create_bucket(Bucket=bucket)
    return ddb, s3


def dynamo_dataplane(boto3, inline_limit: int | None = None):
    from mie_pose.dataplane.dynamodb import INLINE_LIMIT, DynamoDataplane

    ddb, s3 = create_dataplane_tables(boto3)
    return DynamoDataplane(ddb, assets_table="assets", executions_table="executions", metadata_table="metadata",
                           bucket="dp-bucket", s3_client=s3, registry_table="workflows",
                           inline_limit=inline_limit or INLINE_LIMIT)
