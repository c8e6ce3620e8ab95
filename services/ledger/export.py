"""The ledger export: JSON Lines (UTF-8, one object per line), everything an auditor needs to
check the log offline against a signed tree head.

Line 1, the header::

    {"format": "whistle-ledger-export/1", "from_seq": m, "prefix": ["<hex>", …],
     "tree_head": {"tree_size": n, "root_hash": "<hex>", "timestamp": "…", "signature": "<hex>"}}

``tree_head`` is the signed head the export ends at; ``prefix`` holds the hashes of the maximal
perfect subtrees of the first ``m`` leaves, left to right (empty when ``m`` is 0), so that an
export that starts at ``m`` still recomputes the root. Then one line per position ``m … n-1``
of the signed tree, in order::

    {"seq": i, "leaf_hash": "<hex>", "canonical": "<the entry's RFC 8785 JSON, as a string>"}

``leaf_hash`` is the leaf the tree committed at position ``i``; ``canonical`` is the entry the
database now holds with sequence number ``i``, exactly as stored (its UTF-8 bytes are what was
hashed), or ``null`` if there is none. An entry whose personal fields are sealed in
``canonical`` (services/ledger/shredding.py) also has ``"personal": {"<field>": <value>}``,
opened with its tip's key at export time, or ``"已按规定删除"`` once the tip was erased; the
tree does not cover it, and the verifier does not read it. Keeping leaf and entry apart is what
lets the verifier say which entry no longer matches what the log committed to, and how.

The log is one for all counties (docs/scale.md, "Tenancy"). Exported to a one-county token, an
entry of another county is withheld: its line keeps the committed leaf, so the root is still
recomputed from every leaf, but not the entry::

    {"seq": i, "leaf_hash": "<hex>", "canonical": null, "withheld": true}
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from services.ledger.heads import HASH_BYTES, TreeHead, hex_bytes

FORMAT = "whistle-ledger-export/1"
MEDIA_TYPE = "application/x-ndjson"


@dataclass(frozen=True)
class Header:
    from_seq: int
    prefix: list[bytes]
    tree_head: TreeHead


@dataclass(frozen=True)
class Line:
    seq: int
    leaf_hash: bytes
    canonical: bytes | None
    # Another county's entry, left out for the token the export was made for.
    withheld: bool = False


def _encode(document: dict[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def header_line(from_seq: int, prefix: Sequence[bytes], head: TreeHead) -> bytes:
    return _encode(
        {
            "format": FORMAT,
            "from_seq": from_seq,
            "prefix": [h.hex() for h in prefix],
            "tree_head": head.to_json(),
        }
    )


def entry_line(
    seq: int,
    leaf_hash: bytes,
    canonical: bytes | None,
    personal: dict[str, Any] | None = None,
    *,
    withheld: bool = False,
) -> bytes:
    line: dict[str, Any] = {
        "seq": seq,
        "leaf_hash": leaf_hash.hex(),
        "canonical": None if canonical is None or withheld else canonical.decode(),
    }
    if withheld:
        line["withheld"] = True
    elif personal:
        line["personal"] = personal
    return _encode(line)


def parse_header(raw: bytes) -> Header:
    """ValueError says what is wrong."""
    document = _object(raw)
    if document.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} header")
    from_seq = document.get("from_seq")
    prefix = document.get("prefix")
    if not _count(from_seq) or not isinstance(prefix, list):
        raise ValueError("from_seq and prefix are missing or malformed")
    return Header(
        from_seq,
        [hex_bytes(h, HASH_BYTES, "a prefix hash") for h in prefix],
        TreeHead.from_json(document.get("tree_head")),
    )


def parse_line(raw: bytes) -> Line:
    document = _object(raw)
    seq, canonical = document.get("seq"), document.get("canonical")
    if not _count(seq):
        raise ValueError("seq is missing or not a non-negative integer")
    if canonical is not None and not isinstance(canonical, str):
        raise ValueError("canonical must be a string or null")
    withheld = document.get("withheld", False)
    if not isinstance(withheld, bool) or (withheld and canonical is not None):
        raise ValueError("withheld must be true or false, and a withheld entry has no canonical")
    return Line(
        seq,
        hex_bytes(document.get("leaf_hash"), HASH_BYTES, "leaf_hash"),
        None if canonical is None else canonical.encode(),
        withheld,
    )


def _object(raw: bytes) -> dict[str, Any]:
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    return document


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
