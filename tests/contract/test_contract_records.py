"""The JSON of the recovery, key-provider and attestation records: exact bytes (member
names, order and encodings) for one example of each, round trips of generated records, and
the refusals of their readers (each an ``InvalidArguments`` naming the field).

The expected documents were written against the hand-written encoders: the ledger's state
hash and snapshots depend on these bytes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quorumkeep.attest import ROLES, Measurement, TcbPolicy
from quorumkeep.attest.report import TCB_STATUSES
from quorumkeep.contract import InvalidArguments
from quorumkeep.contract.args import MAX_INT
from quorumkeep.contract.attestation_state import (
    AttestationRecord,
    AttestationState,
    PolicyProposal,
)
from quorumkeep.contract.key_provider_state import KeyProviderBook, KeyProviderInfo, StorageDeal
from quorumkeep.contract.recovery_state import (
    PartRecord,
    RecoveryBook,
    RecoveryEpoch,
    RecoveryKey,
)
from quorumkeep.crypto.storage_split import MAX_HOLDERS, MIN_THRESHOLD

# k·G for k = 1..5: valid Ed25519 public keys.
P1 = "5866666666666666666666666666666666666666666666666666666666666666"
P2 = "c9a3f86aae465f0e56513864510f3997561fa2c9e85ea21dc2292309f3cd6022"
P3 = "d4b4f5784868c3020403246717ec169ff79e26608ea126a1ab69ee77d1b16712"
P4 = "2f1132ca61ab38dff00f2fea3228f24c6c71d58085b80e47e19515cb27e8d047"
P5 = "edc876d6831fd2105d0b4389ca2e283166469289146e2ce06faefe98b22548df"
POINTS = [bytes.fromhex(p) for p in (P1, P2, P3, P4, P5)]
M_ID = "4a4a03d4924fcf7aff022c601a11bd5fa14a5915518b22e77c4f17101e15de24"


def b(h: str) -> bytes:
    return bytes.fromhex(h)


def written(record: Any) -> str:
    """The record's JSON as written (member order kept, no sorting)."""
    return json.dumps(record.to_json())


def assert_writes(record: Any, expected: dict[str, Any]) -> None:
    assert written(record) == json.dumps(expected)


# --- one example of each record and the exact JSON it writes ---------------------------

RECOVERY_KEY = RecoveryKey(b("3000aa"), b"\x11" * 32)
RECOVERY_KEY_JSON = {"public_key": "3000aa", "fingerprint": "11" * 32}

PART = PartRecord(3, b"\x22" * 32, b"\x11" * 32, 53_000, 42)
PART_JSON = {
    "participant_id": 3,
    "digest": "22" * 32,
    "fingerprint": "11" * 32,
    "size": 53000,
    "block_height": 42,
}

EPOCH = RecoveryEpoch(
    domain_id=0,
    epoch=2,
    public_key=b(P1),
    threshold=2,
    verifying_shares=((1, b(P2)), (3, b(P3))),
    keyset_hash=b"\x33" * 32,
    parts={"carol": PART, "alice": PartRecord(1, b"\x44" * 32, b"\x11" * 32, 7, 40)},
)
EPOCH_JSON = {
    "domain_id": 0,
    "epoch": 2,
    "public_key": P1,
    "threshold": 2,
    "verifying_shares": {"1": P2, "3": P3},
    "keyset_hash": "33" * 32,
    "parts": {
        "alice": {
            "participant_id": 1,
            "digest": "44" * 32,
            "fingerprint": "11" * 32,
            "size": 7,
            "block_height": 40,
        },
        "carol": PART_JSON,
    },
}

BOOK = RecoveryBook(
    keys={1: RECOVERY_KEY, 0: RecoveryKey(b("3000bb"), b"\x55" * 32)},
    votes={0: {"carol": RECOVERY_KEY, "bob": RECOVERY_KEY}, 1: {}},
    epochs={(0, 2): EPOCH},
)
BOOK_JSON = {
    "keys": {
        "0": {"public_key": "3000bb", "fingerprint": "55" * 32},
        "1": RECOVERY_KEY_JSON,
    },
    "votes": {"0": {"bob": RECOVERY_KEY_JSON, "carol": RECOVERY_KEY_JSON}},
    "epochs": [EPOCH_JSON],
}

PROVIDER = KeyProviderInfo(b(P1), b"\x44" * 32, "http://127.0.0.1:9001")
PROVIDER_JSON = {
    "identity_public_key": P1,
    "encryption_public_key": "44" * 32,
    "url": "http://127.0.0.1:9001",
}

DEAL = StorageDeal(
    epoch=1,
    threshold=2,
    commitment=(b(P2), b(P3)),
    holders=((1, "alice"), (2, "bob"), (3, "carol")),
    signer_public_key=b(P4),
    release_public_key=b(P5),
    recorded_height=17,
)
DEAL_JSON = {
    "epoch": 1,
    "threshold": 2,
    "commitment": [P2, P3],
    "holders": [
        {"index": 1, "provider": "alice"},
        {"index": 2, "provider": "bob"},
        {"index": 3, "provider": "carol"},
    ],
    "signer_public_key": P4,
    "release_public_key": P5,
    "recorded_height": 17,
}

PROVIDERS = KeyProviderBook(
    providers={"bob": KeyProviderInfo(b(P2), b"\x45" * 32, "https://b.example"), "alice": PROVIDER},
    deals={"dave": DEAL},
)
PROVIDERS_JSON = {
    "providers": {
        "alice": PROVIDER_JSON,
        "bob": {
            "identity_public_key": P2,
            "encryption_public_key": "45" * 32,
            "url": "https://b.example",
        },
    },
    "deals": {"dave": DEAL_JSON},
}

MEASUREMENT = Measurement(b"\x01" * 48, b"\x02" * 48, b"\x03" * 48, b"\x04" * 48, b"\x05" * 32)
MEASUREMENT_JSON = {
    "mrtd": "01" * 48,
    "rtmr0": "02" * 48,
    "rtmr1": "03" * 48,
    "rtmr2": "04" * 48,
    "app_hash": "05" * 32,
}

RECORD = AttestationRecord(
    role="node",
    account="alice",
    key=b(P1),
    bound_key=b(P2),
    kind="dev",
    measurement=MEASUREMENT,
    tcb_status="SWHardeningNeeded",
    advisory_ids=("INTEL-SA-00615", "INTEL-SA-00828"),
    attested_at=1000,
    expires_at=605800,
)
RECORD_JSON = {
    "role": "node",
    "account": "alice",
    "key": P1,
    "bound_key": P2,
    "kind": "dev",
    "measurement": MEASUREMENT_JSON,
    "measurement_id": M_ID,
    "tcb_status": "SWHardeningNeeded",
    "advisory_ids": ["INTEL-SA-00615", "INTEL-SA-00828"],
    "attested_at": 1000,
    "expires_at": 605800,
}

ADD = PolicyProposal("add", "node", MEASUREMENT, None, {"carol", "alice"})
ADD_JSON = {
    "action": "add",
    "role": "node",
    "measurement": MEASUREMENT_JSON,
    "policy": None,
    "voters": ["alice", "carol"],
}
WIDEN = PolicyProposal(
    "tcb_policy",
    None,
    None,
    TcbPolicy(frozenset({"UpToDate", "SWHardeningNeeded"}), frozenset({"INTEL-SA-00615"})),
)
WIDEN_JSON = {
    "action": "tcb_policy",
    "role": None,
    "measurement": None,
    "policy": {"statuses": ["SWHardeningNeeded", "UpToDate"], "advisory_ids": ["INTEL-SA-00615"]},
    "voters": [],
}

ATTESTATION = AttestationState(
    dev_platform_public_key=b"\x66" * 32,
    validity_seconds=604800,
    grace_seconds=3600,
    require_tee_backup_services=True,
    genesis_at=1000,
    allowed={"node": {M_ID: MEASUREMENT}},
    proposals={WIDEN.key(): WIDEN, ADD.key(): ADD},
    records={RECORD.key: RECORD},
    marked={"bob": "its attestation expired"},
)
ATTESTATION_JSON = {
    "dev_platform_public_key": "66" * 32,
    "insecure_dev_attestation": True,
    "validity_seconds": 604800,
    "grace_seconds": 3600,
    "require_tee_backup_services": True,
    "genesis_at": 1000,
    "tcb_policy": {"statuses": ["UpToDate"], "advisory_ids": []},
    "allowed_measurements": {"node": [MEASUREMENT_JSON], "backup_service": [], "key_provider": []},
    "proposals": {
        f"add:node:{M_ID}": ADD_JSON,
        "tcb_policy:SWHardeningNeeded,UpToDate:INTEL-SA-00615": WIDEN_JSON,
    },
    "records": [RECORD_JSON],
    "marked": {"bob": "its attestation expired"},
}

EXAMPLES: list[tuple[Any, dict[str, Any]]] = [
    (RECOVERY_KEY, RECOVERY_KEY_JSON),
    (PART, PART_JSON),
    (EPOCH, EPOCH_JSON),
    (BOOK, BOOK_JSON),
    (PROVIDER, PROVIDER_JSON),
    (DEAL, DEAL_JSON),
    (PROVIDERS, PROVIDERS_JSON),
    (RECORD, RECORD_JSON),
    (ADD, ADD_JSON),
    (WIDEN, WIDEN_JSON),
    (ATTESTATION, ATTESTATION_JSON),
]


@pytest.mark.parametrize(("record", "expected"), EXAMPLES, ids=lambda x: type(x).__name__)
def test_each_record_writes_exactly_its_json(record: Any, expected: dict[str, Any]) -> None:
    assert_writes(record, expected)
    # read back, it writes the same bytes (the examples hold what is not read back as such:
    # an empty vote map, roles without measurements)
    assert written(type(record).from_json(json.loads(written(record)), "x")) == written(record)


def test_a_policy_proposal_names_its_content_without_the_voters() -> None:
    assert json.dumps(ADD.content_json()) == json.dumps(
        {"action": "add", "role": "node", "measurement": MEASUREMENT_JSON, "policy": None}
    )


def test_an_argument_deal_takes_its_height_and_has_no_such_member() -> None:
    argument = {k: v for k, v in DEAL_JSON.items() if k != "recorded_height"}
    assert StorageDeal.from_json(argument, "args", recorded_height=17) == DEAL
    with pytest.raises(InvalidArguments, match=r"^args has unknown field\(s\) recorded_height$"):
        StorageDeal.from_json(DEAL_JSON, "args", recorded_height=17)
    with pytest.raises(InvalidArguments, match=r"^args is missing recorded_height$"):
        StorageDeal.from_json(argument, "args")


# --- round trips of generated records ----------------------------------------------------

accounts = st.from_regex(r"[a-z0-9_\-.]{2,64}", fullmatch=True)
ints = st.integers(0, MAX_INT)
points = st.sampled_from(POINTS)
hash32 = st.binary(min_size=32, max_size=32)


def measurements() -> st.SearchStrategy[Measurement]:
    mr = st.binary(min_size=48, max_size=48)
    return st.builds(Measurement, mr, mr, mr, mr, st.none() | hash32)


def tcb_policies() -> st.SearchStrategy[TcbPolicy]:
    others = sorted(TCB_STATUSES - {"UpToDate", "Revoked"})
    advisory = st.integers(0, 10**11 - 1).map(lambda n: f"INTEL-SA-{n:05d}")
    return st.builds(
        TcbPolicy,
        st.sets(st.sampled_from(others)).map(lambda s: frozenset({"UpToDate", *s})),
        st.frozensets(advisory, max_size=4),
    )


recovery_keys = st.builds(RecoveryKey, st.binary(min_size=1, max_size=1024), hash32)
part_records = st.builds(PartRecord, st.integers(1, MAX_INT), hash32, hash32, ints, ints)


@st.composite
def recovery_epochs(draw: st.DrawFn) -> RecoveryEpoch:
    ids = draw(st.lists(st.integers(1, MAX_INT), min_size=1, max_size=6, unique=True))
    return RecoveryEpoch(
        domain_id=draw(ints),
        epoch=draw(ints),
        public_key=draw(points),
        threshold=draw(st.integers(1, MAX_INT)),
        verifying_shares=tuple(sorted((i, draw(points)) for i in ids)),
        keyset_hash=draw(hash32),
        parts=draw(st.dictionaries(accounts, part_records, max_size=3)),
    )


@st.composite
def recovery_books(draw: st.DrawFn) -> RecoveryBook:
    epochs = draw(st.lists(recovery_epochs(), max_size=3))
    return RecoveryBook(
        keys=draw(st.dictionaries(ints, recovery_keys, max_size=3)),
        # an empty vote map is not written (it reads back as no entry)
        votes=draw(
            st.dictionaries(
                ints, st.dictionaries(accounts, recovery_keys, min_size=1, max_size=2), max_size=2
            )
        ),
        epochs={(e.domain_id, e.epoch): e for e in epochs},
    )


provider_infos = st.builds(
    KeyProviderInfo,
    points,
    st.binary(min_size=32, max_size=32).filter(any),
    st.from_regex(r"https?://[\x21-\x7e]{1,40}", fullmatch=True),
)


@st.composite
def storage_deals(draw: st.DrawFn) -> StorageDeal:
    threshold = draw(st.integers(MIN_THRESHOLD, MAX_HOLDERS))
    holders = draw(st.lists(accounts, min_size=threshold, max_size=MAX_HOLDERS))
    return StorageDeal(
        epoch=draw(st.integers(1, MAX_INT)),
        threshold=threshold,
        commitment=tuple(draw(points) for _ in range(threshold)),
        holders=tuple((i + 1, a) for i, a in enumerate(holders)),
        signer_public_key=draw(points),
        release_public_key=draw(points),
        recorded_height=draw(ints),
    )


key_provider_books = st.builds(
    KeyProviderBook,
    st.dictionaries(accounts, provider_infos, max_size=3),
    st.dictionaries(accounts, storage_deals(), max_size=1),
)

attestation_records = st.builds(
    AttestationRecord,
    role=st.sampled_from(ROLES),
    account=accounts,
    key=hash32,
    bound_key=hash32,
    kind=st.text(max_size=8),
    measurement=measurements(),
    tcb_status=st.text(max_size=64),
    advisory_ids=st.lists(st.text(max_size=24), max_size=64).map(tuple),
    attested_at=ints,
    expires_at=ints,
)


@st.composite
def policy_proposals(draw: st.DrawFn) -> PolicyProposal:
    voters = draw(st.sets(accounts, max_size=5))
    if draw(st.booleans()):
        return PolicyProposal("tcb_policy", None, None, draw(tcb_policies()), voters)
    action = draw(st.sampled_from(["add", "remove"]))
    return PolicyProposal(action, draw(st.sampled_from(ROLES)), draw(measurements()), None, voters)


@st.composite
def attestation_states(draw: st.DrawFn) -> AttestationState:
    allowed = {
        role: {m.measurement_id: m for m in draw(st.lists(measurements(), max_size=2))}
        for role in ROLES  # every role is written, an empty one too
    }
    proposals = draw(st.lists(policy_proposals(), max_size=3))
    records = draw(st.lists(attestation_records, max_size=3))
    return AttestationState(
        dev_platform_public_key=draw(st.none() | hash32),
        validity_seconds=draw(ints),
        grace_seconds=draw(ints),
        require_tee_backup_services=draw(st.booleans()),
        genesis_at=draw(ints),
        tcb_policy=draw(tcb_policies()),
        allowed=allowed,
        proposals={p.key(): p for p in proposals},
        records={r.key: r for r in records},
        marked=draw(st.dictionaries(accounts, st.text(max_size=200), max_size=3)),
    )


STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "RecoveryKey": recovery_keys,
    "PartRecord": part_records,
    "RecoveryEpoch": recovery_epochs(),
    "RecoveryBook": recovery_books(),
    "KeyProviderInfo": provider_infos,
    "StorageDeal": storage_deals(),
    "KeyProviderBook": key_provider_books,
    "AttestationRecord": attestation_records,
    "PolicyProposal": policy_proposals(),
    "AttestationState": attestation_states(),
}


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_generated_records_round_trip(name: str) -> None:
    @settings(max_examples=30, deadline=None)
    @given(STRATEGIES[name])
    def round_trip(record: Any) -> None:
        text = written(record)
        again = type(record).from_json(json.loads(text), "x")
        assert again == record
        assert written(again) == text

    round_trip()


# --- refusals: the same inputs refused, with the same words ----------------------------

MISSING = object()
ACCOUNT_RULE = "must be an account name matching ^[a-z0-9_\\-.]{2,64}$"
SPREAD = "['app_hash', 'mrtd', 'rtmr0', 'rtmr1', 'rtmr2']"

# record, valid JSON and the refusals of edits of it: (member path, value, message); the
# path's steps are separated by "/" (a list's are indices), the value MISSING removes it.
REFUSALS: list[tuple[Any, dict[str, Any], list[tuple[str, Any, str]]]] = [
    (RecoveryKey, RECOVERY_KEY_JSON, [
        ("public_key", "", "record.public_key must be 1 to 1024 bytes, got 0"),
        ("public_key", "00" * 1025, "record.public_key must be 1 to 1024 bytes, got 1025"),
        ("fingerprint", "11" * 31, "record.fingerprint must be 32 bytes, got 31"),
        ("fingerprint", "AB" * 32,
         "record.fingerprint must be lowercase hex with an even number of digits"),
        ("fingerprint", MISSING, "record is missing fingerprint"),
        ("extra", 1, "record has unknown field(s) extra"),
    ]),
    (PartRecord, PART_JSON, [
        ("participant_id", 0, f"record.participant_id must be in [1, {MAX_INT}], got 0"),
        ("size", True, "record.size must be an integer"),
        ("block_height", -1, f"record.block_height must be in [0, {MAX_INT}], got -1"),
        ("digest", 5, "record.digest must be a lowercase hex string"),
    ]),
    (RecoveryEpoch, EPOCH_JSON, [
        ("threshold", 0, f"record.threshold must be in [1, {MAX_INT}], got 0"),
        ("public_key", "00" * 32, "record.public_key is not a valid Ed25519 public key"),
        ("verifying_shares", {}, "record.verifying_shares must have 1 to 256 entries, got 0"),
        ("parts", [], "record.parts must be a JSON object"),
        ("parts/X", PART_JSON, f"record.parts key {ACCOUNT_RULE}"),
        ("parts/carol/digest", "22", "record.parts[carol].digest must be 32 bytes, got 1"),
    ]),
    (RecoveryBook, BOOK_JSON, [
        ("keys/01", RECOVERY_KEY_JSON, "record: domain ids are decimal strings"),
        ("votes/0/bob/fingerprint", "",
         "record.votes[0][bob].fingerprint must be 32 bytes, got 0"),
    ]),
    (KeyProviderInfo, PROVIDER_JSON, [
        ("identity_public_key", "00" * 32,
         "record.identity_public_key is not a valid Ed25519 public key"),
        ("encryption_public_key", "00" * 32,
         "record.encryption_public_key must not be the all-zero X25519 key"),
        ("url", "ftp://x", "record.url must be an http(s):// URL without spaces"),
    ]),
    (StorageDeal, DEAL_JSON, [
        ("epoch", 0, f"record.epoch must be in [1, {MAX_INT}], got 0"),
        ("commitment", [P2], "record.commitment must have 2 to 2 entries, got 1"),
        ("holders/1/index", 3, "record.holders must list indices 1..m in order"),
    ]),
    (KeyProviderBook, PROVIDERS_JSON, [
        ("providers/A", PROVIDER_JSON, f"record.providers key {ACCOUNT_RULE}"),
        ("providers/bob/url", 1,
         "record.providers[bob].url must be an http(s):// URL without spaces"),
        ("deals", None, "record.deals must be a JSON object"),
        ("deals/dave/epoch", "1", "record.deals[dave].epoch must be an integer"),
    ]),
    (AttestationRecord, RECORD_JSON, [
        ("role", "root", "record.role must be one of node, backup_service, key_provider"),
        ("account", "A", f"record.account {ACCOUNT_RULE}"),
        ("bound_key", "00", "record.bound_key must be 32 bytes, got 1"),
        ("kind", "x" * 9, "record.kind is longer than 8 characters"),
        ("measurement/app_hash", "00",
         "record.measurement: app_hash must be 32 bytes of lowercase hex"),
        ("measurement_id", MISSING, "record is missing measurement_id"),
        ("advisory_ids", ["x"] * 65, "record.advisory_ids must have 0 to 64 entries, got 65"),
        ("advisory_ids/0", "x" * 25, "record.advisory_ids[] is longer than 24 characters"),
        ("tcb_status", None, "record.tcb_status must be a string"),
        ("expires_at", 1.5, "record.expires_at must be an integer"),
    ]),
    (PolicyProposal, ADD_JSON, [
        ("action", "replace", "record.action is not add, remove or tcb_policy"),
        ("role", "root", "record.role must be one of node, backup_service, key_provider"),
        ("measurement", {}, f"record.measurement: a measurement has exactly the fields {SPREAD}"),
        ("voters", ["alice"] * 257, "record.voters must have 0 to 256 entries, got 257"),
        ("voters/0", "A", f"record.voters[] {ACCOUNT_RULE}"),
    ]),
    (PolicyProposal, WIDEN_JSON, [
        ("policy/statuses", ["Revoked"], "record.policy: a TCB policy always accepts UpToDate"),
    ]),
    (AttestationState, ATTESTATION_JSON, [
        ("dev_platform_public_key", "00", "record.dev_platform_public_key must be 32 bytes, got 1"),
        ("insecure_dev_attestation", MISSING, "record is missing insecure_dev_attestation"),
        ("records/0/key", 1, "record.records[0].key must be a lowercase hex string"),
    ]),
]  # fmt: skip


def edited(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``doc`` with the member at ``path`` set to ``value`` (or removed)."""
    copy = json.loads(json.dumps(doc))
    *steps, last = path.split("/")
    target: Any = copy
    for step in steps:
        target = target[int(step)] if isinstance(target, list) else target[step]
    key: Any = int(last) if isinstance(target, list) else last
    if value is MISSING:
        del target[key]
    else:
        target[key] = value
    return copy


@pytest.mark.parametrize(
    ("record", "doc", "message"),
    [
        pytest.param(record, edited(good, path, value), message, id=f"{record.__name__}:{path}")
        for record, good, refusals in REFUSALS
        for path, value, message in refusals
    ],
)
def test_readers_refuse_naming_the_field(record: Any, doc: Any, message: str) -> None:
    with pytest.raises(InvalidArguments) as refused:
        record.from_json(doc, "record")
    assert refused.value.message == message


@pytest.mark.parametrize("record", sorted({r for r, _, _ in REFUSALS}, key=lambda r: r.__name__))
def test_readers_refuse_what_is_not_an_object(record: Any) -> None:
    with pytest.raises(InvalidArguments) as refused:
        record.from_json([], "record")
    assert refused.value.message == "record must be a JSON object"
