"""DynamoDataplane: the dataplane on DynamoDB (records) and S3 (pages too large for one item).

Tables (their key schemas are in ``deployment/mie-pose.yaml``; ``TABLE_KEYS`` below must match):

- assets: ``asset_id``.
- executions: ``execution_id``; global secondary index ``asset_id-created`` lists one asset's executions.
- metadata: ``asset_id`` + ``item``. An operator's document is a header item ``header#{operator}`` that
  names a *version*, and page items ``page#{operator}#{version}#{page:06d}``.

Why versions: the AWS pose step writes pages from many parallel Map iterations, then one final step
commits the header. Readers follow the header, so until the commit they see the previous document (or
none) and never half of the new one; a failed run leaves only unreferenced pages, which ``discard_version``
removes. ``commit_documents`` publishes several operators' documents in one transaction (the AWS pose step
commits ``PoseDetection`` and ``PoseDetectionRaw`` together), and ``read_page`` reads a staged page back.
Pages are gzipped JSON in a binary attribute; a page over ``inline_limit`` bytes (DynamoDB items stop at
400 KB) goes to the dataplane bucket and its item holds the key. A page is either a list of frames (the
header item holds the rest of the document) or, written through MIE's operator-results contract
(``store_asset_metadata``), a whole ``Results`` object; a paginated write keeps its version and page count
in a ``session#{operator}#{workflow}`` item until its last page commits the header.

Executions are stored whole in MIE's shape (``record``, JSON), with ``asset_id``, ``status`` and ``created``
beside it for the index and for filtering.
"""

from __future__ import annotations

import gzip
import json
import time
import uuid
from typing import NamedTuple

from .base import (DEFAULT_PAGE_FRAMES, REGISTRATION_KINDS, Dataplane, DataplaneError, NoResults, UnknownAsset,
                   UnknownExecution, apply_execution_update, legacy_execution_record, metadata_key,
                   new_execution_record, results_page)
from ..storage import MediaLocation, browser_proxy_location
from .cursor import decode_cursor, encode_cursor, split_pages

TABLE_KEYS = {
    "assets": [("asset_id", "HASH")],
    "executions": [("execution_id", "HASH")],
    "metadata": [("asset_id", "HASH"), ("item", "RANGE")],
    "registry": [("name", "HASH")],
}
EXECUTIONS_BY_ASSET_INDEX = "asset_id-created"
INLINE_LIMIT = 300_000
UPDATE_ATTEMPTS = 20


class StagedDocument(NamedTuple):
    """A document whose pages are written under ``version`` and whose header is not yet published."""

    operator: str
    version: str
    header: dict
    pages: int
    frames: int


def _header_item(operator: str) -> str:
    return f"header#{operator}"


def _page_prefix(operator: str, version: str) -> str:
    return f"page#{operator}#{version}#"


def _page_item(operator: str, version: str, page: int) -> str:
    return f"{_page_prefix(operator, version)}{page:06d}"


class DynamoDataplane(Dataplane):
    def __init__(self, client, *, assets_table: str, executions_table: str, metadata_table: str,
                 bucket: str | None = None, s3_client=None, inline_limit: int = INLINE_LIMIT,
                 registry_table: str | None = None):
        self.client = client
        self.registry_table = registry_table
        self.assets_table = assets_table
        self.executions_table = executions_table
        self.metadata_table = metadata_table
        self.bucket = bucket
        self.s3 = s3_client
        self.inline_limit = inline_limit

    # --- assets -------------------------------------------------------------------------------
    def create_asset(self, media: dict, source_name: str) -> str:
        asset_id = uuid.uuid4().hex
        self.client.put_item(TableName=self.assets_table, Item={
            "asset_id": {"S": asset_id}, "created": {"N": repr(time.time())},
            "source_name": {"S": source_name or "video"}, "media": {"S": json.dumps(media)}})
        return asset_id

    def get_asset(self, asset_id: str) -> dict:
        item = self.client.get_item(TableName=self.assets_table, Key={"asset_id": {"S": asset_id}},
                                    ConsistentRead=True).get("Item")
        if item is None:
            raise UnknownAsset(f"unknown asset {asset_id}")
        return _asset_dict(item)

    def list_assets(self) -> list[dict]:
        items = self._scan(self.assets_table)
        return sorted((_asset_dict(item) for item in items), key=lambda a: a["created"])

    def delete_asset(self, asset_id: str) -> dict:
        asset = self.get_asset(asset_id)
        operators = self.operators_with_metadata(asset_id)
        for item in self._query(self.metadata_table, "asset_id = :a", {":a": {"S": asset_id}}):
            if "s3_key" in item and self.s3 and self.bucket:
                self.s3.delete_object(Bucket=self.bucket, Key=item["s3_key"]["S"])
            self.client.delete_item(TableName=self.metadata_table, Key={"asset_id": item["asset_id"], "item": item["item"]})
        for execution in self.list_executions(asset_id):
            self.client.delete_item(TableName=self.executions_table, Key={"execution_id": {"S": execution["Id"]}})
        deleted = 0
        if self.s3 is not None:
            for media in (asset["media"] or {}).values():
                if isinstance(media, dict) and media.get("S3Bucket") and media.get("S3Key"):
                    deleted += self._delete_objects(media["S3Bucket"], media["S3Key"], exact=True)
                    proxy = browser_proxy_location(MediaLocation(media["S3Bucket"], media["S3Key"]))
                    deleted += self._delete_objects(proxy.bucket, proxy.key, exact=True)
            if self.bucket:
                for prefix in (f"private/assets/{asset_id}/", f"private/{asset_id}/"):
                    deleted += self._delete_objects(self.bucket, prefix)
        self.client.delete_item(TableName=self.assets_table, Key={"asset_id": {"S": asset_id}})
        return {"Media": deleted, "Operators": operators}

    def _delete_objects(self, bucket: str, prefix: str, exact: bool = False) -> int:
        """Delete the object ``prefix`` (exact) or every object under it; return how many went."""
        keys, kwargs = [], {"Bucket": bucket, "Prefix": prefix}
        while True:
            response = self.s3.list_objects_v2(**kwargs)
            keys += [obj["Key"] for obj in response.get("Contents", []) if not exact or obj["Key"] == prefix]
            if not response.get("IsTruncated"):
                break
            kwargs["ContinuationToken"] = response["NextContinuationToken"]
        for start in range(0, len(keys), 1000):
            self.s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[start:start + 1000]]})
        return len(keys)

    # --- workflow executions ------------------------------------------------------------------
    def create_execution(self, asset_id, workflow_name, stages, *, execution_id=None, workflow=None,
                         configuration=None, worker=None) -> str:
        asset = self.get_asset(asset_id)
        execution_id = execution_id or uuid.uuid4().hex
        now = time.time()
        record = new_execution_record(execution_id, asset_id, workflow_name, stages, workflow=workflow,
                                      configuration=configuration, media=asset["media"], created=now)
        if worker is not None:
            record["Worker"] = worker
        self.client.put_item(TableName=self.executions_table, Item=_execution_item(record, now),
                             ConditionExpression="attribute_not_exists(execution_id)")
        return execution_id

    def update_execution(self, execution_id, **changes) -> None:
        # Read-modify-write with optimistic locking: the API, the operators' Lambdas and their monitors (Progress)
        # may update the same record at once; a write that lost the race reads again and reapplies.
        for _ in range(UPDATE_ATTEMPTS):
            item = self._get_execution_item(execution_id)
            revision = int(item.get("revision", {}).get("N", "0"))
            record = apply_execution_update(_execution_dict(item), **changes)
            new_item = {**_execution_item(record), "revision": {"N": str(revision + 1)}}
            condition = ({"ConditionExpression": "revision = :r", "ExpressionAttributeValues": {":r": {"N": str(revision)}}}
                         if "revision" in item else {"ConditionExpression": "attribute_not_exists(revision)"})
            try:
                self.client.put_item(TableName=self.executions_table, Item=new_item, **condition)
                return
            except self.client.exceptions.ConditionalCheckFailedException:
                continue
        raise DataplaneError(f"workflow execution {execution_id}: {UPDATE_ATTEMPTS} concurrent updates in a row won")

    def get_execution(self, execution_id: str) -> dict:
        return _execution_dict(self._get_execution_item(execution_id))

    def list_executions(self, asset_id: str | None = None) -> list[dict]:
        if asset_id:
            items = self._query(self.executions_table, "asset_id = :a", {":a": {"S": asset_id}},
                                index=EXECUTIONS_BY_ASSET_INDEX)
        else:
            items = self._scan(self.executions_table)
        return sorted((_execution_dict(item) for item in items), key=lambda e: float(e["Created"]))

    def delete_execution(self, execution_id: str) -> dict:
        record = self.get_execution(execution_id)
        self.client.delete_item(TableName=self.executions_table, Key={"execution_id": {"S": execution_id}})
        return record

    def _get_execution_item(self, execution_id: str) -> dict:
        item = self.client.get_item(TableName=self.executions_table, Key={"execution_id": {"S": execution_id}},
                                    ConsistentRead=True).get("Item")
        if item is None:
            raise UnknownExecution(f"Exception: workflow execution '{execution_id}' not found")
        return item

    # --- operator metadata: staged writes ---------------------------------------------------------
    @staticmethod
    def new_version() -> str:
        return uuid.uuid4().hex

    def put_page(self, asset_id: str, operator: str, version: str, page: int, frames: list | dict) -> None:
        """Write one page (a frames list, or a whole Results object) of a version that is not visible until
        ``commit_metadata``."""
        body = gzip.compress(json.dumps(frames, separators=(",", ":")).encode(), compresslevel=6)
        count = len(frames) if isinstance(frames, list) else len(frames.get("frames") or [])
        item = {"asset_id": {"S": asset_id}, "item": {"S": _page_item(operator, version, page)},
                "frame_count": {"N": str(count)}}
        if len(body) <= self.inline_limit:
            item["frames"] = {"B": body}
        else:
            if not (self.bucket and self.s3):
                raise DataplaneError(f"page {page} is {len(body)} bytes gzipped and no dataplane bucket is set")
            key = f"private/{asset_id}/metadata/{operator}/{version}/{page:06d}.json.gz"
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json",
                               ContentEncoding="gzip")
            item["s3_key"] = {"S": key}
        self.client.put_item(TableName=self.metadata_table, Item=item)

    def commit_metadata(self, asset_id: str, operator: str, version: str, header: dict, pages: int,
                        frames: int) -> None:
        """Point the operator's header at ``version`` (one atomic write), then drop the old version."""
        self.commit_documents(asset_id, [StagedDocument(operator, version, header, pages, frames)])

    def commit_documents(self, asset_id: str, documents: list["StagedDocument"], delete: tuple = ()) -> None:
        """Publish several staged documents and delete the documents of the operators in ``delete``, in one
        DynamoDB transaction: readers see all of the new headers or none of them (PoseDetection and
        PoseDetectionRaw always carry the same track ids). Superseded versions are dropped afterwards."""
        if not documents:
            raise DataplaneError("nothing to commit")
        actions, previous = [], {}
        for doc in documents:
            if doc.pages < 1:
                raise DataplaneError("a document has at least one page")
            for page in range(doc.pages):
                if not self._get_page_item(asset_id, doc.operator, doc.version, page, keys_only=True):
                    raise DataplaneError(f"cannot commit {doc.operator} for {asset_id}: page {page} was never written")
            previous[doc.operator] = self._get_header_item(asset_id, doc.operator)
            actions.append({"Put": {"TableName": self.metadata_table, "Item": {
                "asset_id": {"S": asset_id}, "item": {"S": _header_item(doc.operator)},
                "operator": {"S": doc.operator},
                "header": {"S": json.dumps({k: v for k, v in doc.header.items() if k != "frames"})},
                "version": {"S": doc.version}, "pages": {"N": str(doc.pages)}, "frames": {"N": str(doc.frames)},
                "updated": {"N": repr(time.time())}}}})
        gone = {}
        for operator in delete:
            header = self._get_header_item(asset_id, operator)
            if header is not None and operator not in previous:
                gone[operator] = header
                actions.append({"Delete": {"TableName": self.metadata_table, "Key": {
                    "asset_id": {"S": asset_id}, "item": {"S": _header_item(operator)}}}})
        self.client.transact_write_items(TransactItems=actions)
        new_versions = {doc.operator: doc.version for doc in documents}
        for operator, header in {**previous, **gone}.items():
            if header and header["version"]["S"] != new_versions.get(operator):
                self.discard_version(asset_id, operator, header["version"]["S"])

    def read_page(self, asset_id: str, operator: str, version: str, page: int) -> list | dict | None:
        """One page of a version as written (frames, or a Results object); None if it was never written."""
        item = self._get_page_item(asset_id, operator, version, page)
        return None if item is None else self._page_frames(item)

    def committed_version(self, asset_id: str, operator: str) -> str | None:
        """The version the operator's header points at, or None when it has no document."""
        header = self._get_header_item(asset_id, operator)
        return header["version"]["S"] if header else None

    def discard_version(self, asset_id: str, operator: str, version: str) -> int:
        """Delete every page of an uncommitted or superseded version; return how many."""
        items = self._query(self.metadata_table, "asset_id = :a AND begins_with(#i, :p)",
                            {":a": {"S": asset_id}, ":p": {"S": _page_prefix(operator, version)}},
                            names={"#i": "item"})
        for item in items:
            if "s3_key" in item and self.s3 and self.bucket:
                self.s3.delete_object(Bucket=self.bucket, Key=item["s3_key"]["S"])
            self.client.delete_item(TableName=self.metadata_table,
                                    Key={"asset_id": item["asset_id"], "item": item["item"]})
        return len(items)

    # --- operator metadata: the Dataplane interface -------------------------------------------
    def store_metadata(self, asset_id, operator, document, page_frames=DEFAULT_PAGE_FRAMES) -> int:
        self.get_asset(asset_id)
        frames = document.get("frames", [])
        pages = split_pages(frames, page_frames)
        version = self.new_version()
        try:
            for number, page in enumerate(pages):
                self.put_page(asset_id, operator, version, number, page)
            self.commit_metadata(asset_id, operator, version, document, len(pages), len(frames))
        except BaseException:
            self.discard_version(asset_id, operator, version)
            raise
        return len(pages)

    def get_metadata_page(self, asset_id, operator, cursor=None) -> dict:
        page_no = decode_cursor(cursor)
        header = self._get_header_item(asset_id, operator)
        if header is None:
            self.get_asset(asset_id)
            raise NoResults(f"no {operator} results for asset {asset_id}")
        pages = int(header["pages"]["N"])
        if page_no >= pages:
            raise DataplaneError(f"cursor past the last page ({pages} pages)")
        item = self._get_page_item(asset_id, operator, header["version"]["S"], page_no)
        if item is None:
            raise DataplaneError(f"page {page_no} of {operator} for {asset_id} is missing")
        body = self._page_frames(item)
        results = body if isinstance(body, dict) else results_page(json.loads(header["header"]["S"]), body)
        answer = {"asset_id": asset_id, "operator": operator, "results": results}
        if page_no + 1 < pages:
            answer["cursor"] = encode_cursor(page_no + 1)
        return answer

    def store_asset_metadata(self, asset_id, operator_name, workflow_id, results, paginate=False, end=False) -> dict:
        self.get_asset(asset_id)
        if not isinstance(results, dict):
            raise DataplaneError(f"Exception occurred while storing metadata for {asset_id}: results are not "
                                 "the required data type, dict")
        published = {"Status": "Success", "Bucket": self.bucket, "Key": metadata_key(asset_id, workflow_id, operator_name)}
        if not paginate:
            version = self.new_version()
            self.put_page(asset_id, operator_name, version, 0, results)
            self.commit_documents(asset_id, [StagedDocument(operator_name, version, {}, 1, len(results.get("frames") or []))])
            return published
        key = {"asset_id": {"S": asset_id}, "item": {"S": f"session#{operator_name}#{workflow_id}"}}
        session = self.client.get_item(TableName=self.metadata_table, Key=key, ConsistentRead=True).get("Item")
        if session is None:
            session = {**key, "version": {"S": self.new_version()}, "pages": {"N": "0"}, "frames": {"N": "0"}}
        version, page = session["version"]["S"], int(session["pages"]["N"])
        self.put_page(asset_id, operator_name, version, page, results)
        frames = int(session["frames"]["N"]) + len(results.get("frames") or [])
        if not end:
            session.update(pages={"N": str(page + 1)}, frames={"N": str(frames)})
            self.client.put_item(TableName=self.metadata_table, Item=session)
            return {"Status": "Success"}
        self.commit_documents(asset_id, [StagedDocument(operator_name, version, {}, page + 1, frames)])
        self.client.delete_item(TableName=self.metadata_table, Key=key)
        return published

    def discard_asset_metadata_session(self, asset_id, operator_name, workflow_id) -> int:
        key = {"asset_id": {"S": asset_id}, "item": {"S": f"session#{operator_name}#{workflow_id}"}}
        session = self.client.get_item(TableName=self.metadata_table, Key=key, ConsistentRead=True).get("Item")
        if session is None:
            return 0
        dropped = self.discard_version(asset_id, operator_name, session["version"]["S"])
        self.client.delete_item(TableName=self.metadata_table, Key=key)
        return dropped

    def delete_metadata(self, asset_id, operator) -> bool:
        header = self._get_header_item(asset_id, operator)
        if header is None:
            return False
        self.client.delete_item(TableName=self.metadata_table,
                                Key={"asset_id": {"S": asset_id}, "item": {"S": _header_item(operator)}})
        self.discard_version(asset_id, operator, header["version"]["S"])
        return True

    def operators_with_metadata(self, asset_id: str) -> list[str]:
        items = self._query(self.metadata_table, "asset_id = :a AND begins_with(#i, :p)",
                            {":a": {"S": asset_id}, ":p": {"S": "header#"}}, names={"#i": "item"})
        return sorted(item["operator"]["S"] for item in items)

    def _get_header_item(self, asset_id: str, operator: str) -> dict | None:
        return self.client.get_item(TableName=self.metadata_table, ConsistentRead=True, Key={
            "asset_id": {"S": asset_id}, "item": {"S": _header_item(operator)}}).get("Item")

    def _get_page_item(self, asset_id: str, operator: str, version: str, page: int,
                       keys_only: bool = False) -> dict | None:
        kwargs = {"ProjectionExpression": "#i", "ExpressionAttributeNames": {"#i": "item"}} if keys_only else {}
        return self.client.get_item(TableName=self.metadata_table, ConsistentRead=True, Key={
            "asset_id": {"S": asset_id}, "item": {"S": _page_item(operator, version, page)}}, **kwargs).get("Item")

    def _page_frames(self, item: dict) -> list:
        if "frames" in item:
            body = item["frames"]["B"]
        else:
            body = self.s3.get_object(Bucket=self.bucket, Key=item["s3_key"]["S"])["Body"].read()
        return json.loads(gzip.decompress(body))

    # --- workflow registry --------------------------------------------------------------------
    def put_registration(self, kind: str, name: str, record: dict) -> None:
        self.client.put_item(TableName=self._registry(kind), Item={
            "name": {"S": f"{kind}:{name}"}, "kind": {"S": kind}, "body": {"S": json.dumps(record)},
            "updated": {"N": repr(time.time())}})

    def get_registration(self, kind: str, name: str) -> dict | None:
        item = self.client.get_item(TableName=self._registry(kind), Key={"name": {"S": f"{kind}:{name}"}},
                                    ConsistentRead=True).get("Item")
        return json.loads(item["body"]["S"]) if item else None

    def list_registrations(self, kind: str) -> list[dict]:
        # The registry holds a handful of items: a filtered scan is cheaper than an index.
        items, kwargs = [], {"TableName": self._registry(kind), "FilterExpression": "#k = :k",
                             "ExpressionAttributeNames": {"#k": "kind"},
                             "ExpressionAttributeValues": {":k": {"S": kind}}}
        while True:
            response = self.client.scan(**kwargs)
            items.extend(response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                break
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return [json.loads(item["body"]["S"]) for item in sorted(items, key=lambda i: i["name"]["S"])]

    def delete_registration(self, kind: str, name: str) -> None:
        self.client.delete_item(TableName=self._registry(kind), Key={"name": {"S": f"{kind}:{name}"}})

    def _registry(self, kind: str) -> str:
        if kind not in REGISTRATION_KINDS:
            raise DataplaneError(f"cannot register a {kind!r}; kinds are {', '.join(REGISTRATION_KINDS)}")
        if not self.registry_table:
            raise DataplaneError("this dataplane has no workflow registry table (set WORKFLOW_TABLE)")
        return self.registry_table

    # --- paging helpers -----------------------------------------------------------------------
    def _scan(self, table: str) -> list[dict]:
        items, kwargs = [], {"TableName": table}
        while True:
            response = self.client.scan(**kwargs)
            items.extend(response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return items
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def _query(self, table: str, condition: str, values: dict, index: str | None = None,
               names: dict | None = None) -> list[dict]:
        kwargs = {"TableName": table, "KeyConditionExpression": condition, "ExpressionAttributeValues": values}
        if index:
            kwargs["IndexName"] = index
        else:
            kwargs["ConsistentRead"] = True
        if names:
            kwargs["ExpressionAttributeNames"] = names
        items = []
        while True:
            response = self.client.query(**kwargs)
            items.extend(response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return items
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def _asset_dict(item: dict) -> dict:
    return {"asset_id": item["asset_id"]["S"], "created": float(item["created"]["N"]),
            "source_name": item["source_name"]["S"], "media": json.loads(item["media"]["S"])}


def _execution_item(record: dict, created: float | None = None) -> dict:
    return {"execution_id": {"S": record["Id"]}, "asset_id": {"S": record["AssetId"]},
            "status": {"S": record["Status"]}, "created": {"N": repr(created or float(record["Created"]))},
            "updated": {"N": repr(time.time())}, "record": {"S": json.dumps(record)}}


def _execution_dict(item: dict) -> dict:
    if "record" in item:
        return json.loads(item["record"]["S"])
    return legacy_execution_record({  # stored before executions had MIE's shape
        "execution_id": item["execution_id"]["S"], "asset_id": item["asset_id"]["S"],
        "workflow": item.get("workflow", {}).get("S"), "status": item["status"]["S"],
        "created": float(item["created"]["N"]), "stages": json.loads(item.get("stages", {}).get("S") or "{}"),
        "message": item.get("message", {}).get("S")})
