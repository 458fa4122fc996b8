"""ACLs, SCRAM credentials and client quotas through the Kafka protocol (what aiokafka's
admin client lacks).

aiokafka 0.14 has no ACL, SCRAM or client-quota admin API, and its
CreateAcls/DeleteAcls structs stop at the non-flexible v1, one ACL per request.
This module sends the flexible versions Kafka 4.x serves
(CreateAcls/DescribeAcls/DeleteAcls v2-v3, AlterUserScramCredentials and
DescribeUserScramCredentials v0, DescribeClientQuotas and AlterClientQuotas v1) through
aiokafka's own protocol layer and connection (so TLS/SASL come from the same
``KafkaConnection``), batching every ACL of a run into one request. The field
layouts follow Kafka's ``clients/src/main/resources/common/message/*.json``.

Chosen over the Java ``AclCommand``/``ConfigCommand``: no extra jars, no 2-3 s
JVM start per call, one code path for tests and production, and the broker's
own error codes come back as aiokafka error classes.
"""

# mypy: disable-error-code="misc"
# (aiokafka ships no type information: its protocol base classes are Any to mypy)

from __future__ import annotations

import enum
import hashlib
import os
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, TypeAlias

from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    Boolean,
    CompactArray,
    CompactBytes,
    CompactString,
    Float64,
    Int8,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)

from i24net.errors import BrokerAuthorizationError, BrokerError
from i24net.kafka.admin import KafkaConnection


class ResourceType(enum.IntEnum):
    ANY = 1
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4
    TRANSACTIONAL_ID = 5


class PatternType(enum.IntEnum):
    ANY = 1
    MATCH = 2
    LITERAL = 3
    PREFIXED = 4


class AclOperation(enum.IntEnum):
    ANY = 1
    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    CLUSTER_ACTION = 9
    DESCRIBE_CONFIGS = 10
    ALTER_CONFIGS = 11
    IDEMPOTENT_WRITE = 12


class AclPermission(enum.IntEnum):
    ANY = 1
    DENY = 2
    ALLOW = 3


CLUSTER_RESOURCE = "kafka-cluster"


@dataclass(frozen=True, order=True)
class AclBinding:
    """One ACL: ``principal`` may (or may not) do ``operation`` on a resource pattern."""

    principal: str  # "User:FR"
    resource_type: ResourceType
    resource_name: str
    pattern_type: PatternType
    operation: AclOperation
    permission: AclPermission = AclPermission.ALLOW
    host: str = "*"

    def __str__(self) -> str:
        return (
            f"{self.permission.name} {self.principal} {self.operation.name} "
            f"{self.resource_type.name}:{self.pattern_type.name}:{self.resource_name}"
        )

    def as_filter(self) -> tuple[Any, ...]:
        return (
            int(self.resource_type),
            self.resource_name,
            int(self.pattern_type),
            self.principal,
            self.host,
            int(self.operation),
            int(self.permission),
            {},
        )


# -- protocol structs (flexible versions: compact strings, tagged fields) -------

_S = CompactString("utf-8")
_T = ("tags", TaggedFields)


class CreateAclsResponse_v3(Response):
    API_KEY = 30
    API_VERSION = 3
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("results", CompactArray(("error_code", Int16), ("error_message", _S), _T)),
        _T,
    )


class CreateAclsRequest_v3(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 30
    API_VERSION = 3
    RESPONSE_TYPE = CreateAclsResponse_v3
    SCHEMA = Schema(
        (
            "creations",
            CompactArray(
                ("resource_type", Int8),
                ("resource_name", _S),
                ("resource_pattern_type", Int8),
                ("principal", _S),
                ("host", _S),
                ("operation", Int8),
                ("permission_type", Int8),
                _T,
            ),
        ),
        _T,
    )


_Acl = CompactArray(("principal", _S), ("host", _S), ("operation", Int8), ("permission", Int8), _T)


class DescribeAclsResponse_v3(Response):
    API_KEY = 29
    API_VERSION = 3
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("error_code", Int16),
        ("error_message", _S),
        (
            "resources",
            CompactArray(
                ("resource_type", Int8),
                ("resource_name", _S),
                ("pattern_type", Int8),
                ("acls", _Acl),
                _T,
            ),
        ),
        _T,
    )


class DescribeAclsRequest_v3(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 29
    API_VERSION = 3
    RESPONSE_TYPE = DescribeAclsResponse_v3
    SCHEMA = Schema(
        ("resource_type_filter", Int8),
        ("resource_name_filter", _S),
        ("pattern_type_filter", Int8),
        ("principal_filter", _S),
        ("host_filter", _S),
        ("operation", Int8),
        ("permission_type", Int8),
        _T,
    )


class DeleteAclsResponse_v3(Response):
    API_KEY = 31
    API_VERSION = 3
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "filter_results",
            CompactArray(
                ("error_code", Int16),
                ("error_message", _S),
                (
                    "matching_acls",
                    CompactArray(
                        ("error_code", Int16),
                        ("error_message", _S),
                        ("resource_type", Int8),
                        ("resource_name", _S),
                        ("pattern_type", Int8),
                        ("principal", _S),
                        ("host", _S),
                        ("operation", Int8),
                        ("permission_type", Int8),
                        _T,
                    ),
                ),
                _T,
            ),
        ),
        _T,
    )


class DeleteAclsRequest_v3(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 31
    API_VERSION = 3
    RESPONSE_TYPE = DeleteAclsResponse_v3
    SCHEMA = Schema(
        (
            "filters",
            CompactArray(
                ("resource_type_filter", Int8),
                ("resource_name_filter", _S),
                ("pattern_type_filter", Int8),
                ("principal_filter", _S),
                ("host_filter", _S),
                ("operation", Int8),
                ("permission_type", Int8),
                _T,
            ),
        ),
        _T,
    )


class DescribeUserScramCredentialsResponse_v0(Response):
    API_KEY = 50
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("error_code", Int16),
        ("error_message", _S),
        (
            "results",
            CompactArray(
                ("user", _S),
                ("error_code", Int16),
                ("error_message", _S),
                ("credential_infos", CompactArray(("mechanism", Int8), ("iterations", Int32), _T)),
                _T,
            ),
        ),
        _T,
    )


class DescribeUserScramCredentialsRequest_v0(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 50
    API_VERSION = 0
    RESPONSE_TYPE = DescribeUserScramCredentialsResponse_v0
    SCHEMA = Schema(("users", CompactArray(("name", _S), _T)), _T)


class AlterUserScramCredentialsResponse_v0(Response):
    API_KEY = 51
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "results",
            CompactArray(("user", _S), ("error_code", Int16), ("error_message", _S), _T),
        ),
        _T,
    )


class AlterUserScramCredentialsRequest_v0(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 51
    API_VERSION = 0
    RESPONSE_TYPE = AlterUserScramCredentialsResponse_v0
    SCHEMA = Schema(
        ("deletions", CompactArray(("name", _S), ("mechanism", Int8), _T)),
        (
            "upsertions",
            CompactArray(
                ("name", _S),
                ("mechanism", Int8),
                ("iterations", Int32),
                ("salt", CompactBytes),
                ("salted_password", CompactBytes),
                _T,
            ),
        ),
        _T,
    )


_Entity = CompactArray(("entity_type", _S), ("entity_name", _S), _T)


class DescribeClientQuotasResponse_v1(Response):
    API_KEY = 48
    API_VERSION = 1
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("error_code", Int16),
        ("error_message", _S),
        (
            "entries",
            CompactArray(
                ("entity", _Entity),
                ("values", CompactArray(("key", _S), ("value", Float64), _T)),
                _T,
            ),
        ),
        _T,
    )


class DescribeClientQuotasRequest_v1(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 48
    API_VERSION = 1
    RESPONSE_TYPE = DescribeClientQuotasResponse_v1
    SCHEMA = Schema(
        (
            "components",
            CompactArray(("entity_type", _S), ("match_type", Int8), ("match", _S), _T),
        ),
        ("strict", Boolean),
        _T,
    )


class AlterClientQuotasResponse_v1(Response):
    API_KEY = 49
    API_VERSION = 1
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "entries",
            CompactArray(("error_code", Int16), ("error_message", _S), ("entity", _Entity), _T),
        ),
        _T,
    )


class AlterClientQuotasRequest_v1(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 49
    API_VERSION = 1
    RESPONSE_TYPE = AlterClientQuotasResponse_v1
    SCHEMA = Schema(
        (
            "entries",
            CompactArray(
                ("entity", _Entity),
                ("ops", CompactArray(("key", _S), ("value", Float64), ("remove", Boolean), _T)),
                _T,
            ),
        ),
        ("validate_only", Boolean),
        _T,
    )


_AnyStruct: TypeAlias = RequestStruct


class _Raw(Request[_AnyStruct]):
    """Wraps one prebuilt flexible request struct (the broker must serve its version)."""

    API_KEY: ClassVar[int] = -1

    def __init__(self, struct: RequestStruct) -> None:
        self._struct = struct

    def build(self, request_struct_class: type[_AnyStruct]) -> _AnyStruct:
        return self._struct

    def prepare(self, versions: dict[int, tuple[int, int]]) -> _AnyStruct:
        low, high = versions.get(self._struct.API_KEY, (0, -1))
        if not low <= self._struct.API_VERSION <= high:
            raise BrokerError(
                f"the broker does not serve {type(self._struct).__name__} "
                f"(supported versions of API {self._struct.API_KEY}: {low}-{high})"
            )
        return self._struct


# -- SCRAM ------------------------------------------------------------------------

QUOTA_MATCH_SPECIFIED = 2
"""DescribeClientQuotas match type: every entity with a name (not the default)."""

SCRAM_SHA_512 = 2
#: Kafka accepts 4096-16384 iterations for SCRAM-SHA-512.
SCRAM_ITERATIONS = 8192


def scram_salted_password(password: str, salt: bytes, iterations: int = SCRAM_ITERATIONS) -> bytes:
    """RFC 5802 ``Hi(Normalize(password), salt, i)`` with HMAC-SHA-512."""
    normalized = unicodedata.normalize("NFKC", password).encode()
    return hashlib.pbkdf2_hmac("sha512", normalized, salt, iterations)


def raise_for_code(code: int, message: str | None, what: str) -> None:
    """Raise the i24net error for a Kafka error code (the aiokafka error is the cause)."""
    if code == 0:
        return
    from aiokafka import errors as kafka_errors

    error = kafka_errors.for_code(code)
    cause = error(message) if message else error()
    text = f"{what}: {error.__name__} ({code}){': ' + message if message else ''}"
    if code in (29, 30, 31, 53):  # topic, group, cluster, transactional id authorization
        raise BrokerAuthorizationError(
            text + "; provisioning needs a super user (the `admin` credential)"
        ) from cause
    raise BrokerError(text) from cause


class SecurityAdmin:
    """ACL and SCRAM administration over one authenticated connection.

    ``async with SecurityAdmin(conn) as admin: await admin.describe_acls()``.
    """

    def __init__(self, conn: KafkaConnection, *, request_timeout_ms: int = 30000) -> None:
        from aiokafka import AIOKafkaClient

        self._client = AIOKafkaClient(**conn.client_kwargs(), request_timeout_ms=request_timeout_ms)

    async def __aenter__(self) -> SecurityAdmin:
        await self._client.bootstrap()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._client.close()

    async def _send(self, struct: RequestStruct) -> Any:
        node = self._client.get_random_node()
        if node is None:
            await self._client.force_metadata_update()
            node = self._client.get_random_node()
        return await self._client.send(node, _Raw(struct))

    # -- ACLs ----------------------------------------------------------------
    async def describe_acls(self) -> set[AclBinding]:
        """Every ACL on the cluster."""
        resp = await self._send(
            DescribeAclsRequest_v3(
                int(ResourceType.ANY), None, int(PatternType.ANY), None, None, 1, 1, {}
            )
        )
        raise_for_code(resp.error_code, resp.error_message, "describing ACLs")
        out: set[AclBinding] = set()
        for rtype, rname, ptype, acls, _ in resp.resources:
            for principal, host, op, perm, _ in acls:
                out.add(
                    AclBinding(
                        principal,
                        ResourceType(rtype),
                        rname,
                        PatternType(ptype),
                        AclOperation(op),
                        AclPermission(perm),
                        host,
                    )
                )
        return out

    async def create_acls(self, bindings: Iterable[AclBinding]) -> None:
        items = sorted(set(bindings))
        if not items:
            return
        resp = await self._send(CreateAclsRequest_v3([b.as_filter() for b in items], {}))
        for binding, (code, message, _) in zip(items, resp.results, strict=True):
            raise_for_code(code, message, f"creating ACL {binding}")

    async def delete_acls(self, bindings: Iterable[AclBinding]) -> None:
        items = sorted(set(bindings))
        if not items:
            return
        resp = await self._send(DeleteAclsRequest_v3([b.as_filter() for b in items], {}))
        for binding, (code, message, _, _) in zip(items, resp.filter_results, strict=True):
            raise_for_code(code, message, f"deleting ACL {binding}")

    # -- SCRAM ---------------------------------------------------------------
    async def scram_users(self) -> set[str]:
        """Users that have a SCRAM-SHA-512 credential."""
        resp = await self._send(DescribeUserScramCredentialsRequest_v0(None, {}))
        raise_for_code(resp.error_code, resp.error_message, "describing SCRAM credentials")
        users: set[str] = set()
        for user, code, message, infos, _ in resp.results:
            raise_for_code(code, message, f"describing SCRAM credentials of {user}")
            if any(mech == SCRAM_SHA_512 for mech, _, _ in infos):
                users.add(user)
        return users

    async def upsert_scram(
        self, passwords: dict[str, str], *, iterations: int = SCRAM_ITERATIONS
    ) -> None:
        """Create or replace SCRAM-SHA-512 credentials (user name -> password)."""
        if not passwords:
            return
        upserts: list[tuple[Any, ...]] = []
        for name, password in sorted(passwords.items()):
            salt = os.urandom(32)
            salted = scram_salted_password(password, salt, iterations)
            upserts.append((name, SCRAM_SHA_512, iterations, salt, salted, {}))
        resp = await self._send(AlterUserScramCredentialsRequest_v0([], upserts, {}))
        for user, code, message, _ in resp.results:
            raise_for_code(code, message, f"setting the SCRAM credential of {user}")

    async def delete_scram(self, users: Iterable[str]) -> None:
        names = sorted(set(users))
        if not names:
            return
        resp = await self._send(
            AlterUserScramCredentialsRequest_v0([(n, SCRAM_SHA_512, {}) for n in names], [], {})
        )
        for user, code, message, _ in resp.results:
            raise_for_code(code, message, f"deleting the SCRAM credential of {user}")

    # -- client quotas (per user principal) -------------------------------------
    async def user_quotas(self) -> dict[str, dict[str, float]]:
        """The quotas set on named ``user`` entities alone (user name -> key -> value);
        defaults and (user, client-id) pairs are not listed."""
        resp = await self._send(
            DescribeClientQuotasRequest_v1([("user", QUOTA_MATCH_SPECIFIED, None, {})], True, {})
        )
        raise_for_code(resp.error_code, resp.error_message, "describing client quotas")
        out: dict[str, dict[str, float]] = {}
        for entity, values, _ in resp.entries or ():
            if len(entity) != 1 or entity[0][0] != "user" or entity[0][1] is None:
                continue
            out[entity[0][1]] = {key: value for key, value, _ in values}
        return out

    async def alter_user_quotas(
        self, changes: dict[str, dict[str, float | None]], *, validate_only: bool = False
    ) -> None:
        """Set (a value) or remove (None) quota keys of users: user -> key -> value."""
        entries: list[tuple[Any, ...]] = []
        for user, ops in sorted(changes.items()):
            if not ops:
                continue
            entries.append(
                (
                    [("user", user, {})],
                    [
                        (k, 0.0 if v is None else float(v), v is None, {})
                        for k, v in sorted(ops.items())
                    ],
                    {},
                )
            )
        if not entries:
            return
        resp = await self._send(AlterClientQuotasRequest_v1(entries, validate_only, {}))
        for code, message, entity, _ in resp.entries:
            who = ",".join(f"{t}={n}" for t, n, _ in entity)
            raise_for_code(code, message, f"setting client quotas of {who}")
