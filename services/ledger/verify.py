"""Offline verification of a ledger export (services.ledger.export), without server or database.

What is checked, in one pass over the file:

1. the signature of the head the export ends at (and of the earlier head the auditor kept);
2. that the lines are the positions ``from_seq … tree_size-1``, each once, in order;
3. that the committed leaf hashes, with the header's prefix, recompute the signed root — which
   proves every entry's inclusion at once, and authenticates each committed leaf hash;
4. that each entry's canonical bytes hash to the leaf committed at its position; where they do
   not, the mismatches are compared with each other to tell an altered entry from a removed,
   inserted or moved one;
5. that the tree at the earlier head's size, recomputed from the same leaves, has that head's
   root: the log only grew since the auditor's head.

Messages are for the county's auditors, in Chinese; entries are named by their sequence number
(``序号``, 0-based, the position in the tree).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from services.ledger.export import Header, parse_header, parse_line
from services.ledger.heads import TreeHead, verify_head
from services.ledger.merkle import Frontier, leaf_hash

# Enough to show what happened; a file mangled throughout would otherwise print itself back.
MAX_FINDINGS = 50


@dataclass(frozen=True)
class Finding:
    # signature | format | sequence | root | consistency | altered | removed | inserted | moved
    kind: str
    seq: int | None
    message: str


@dataclass
class Report:
    head: TreeHead | None = None
    lines: int = 0
    # Another county's entries the export left out (their leaves still make the root).
    withheld: int = 0
    checks: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    # How many findings were left out beyond MAX_FINDINGS.
    more: int = 0

    @property
    def ok(self) -> bool:
        return not self.findings

    def add(self, kind: str, seq: int | None, message: str) -> None:
        if len(self.findings) < MAX_FINDINGS:
            self.findings.append(Finding(kind, seq, message))
        else:
            self.more += 1

    def render(self) -> str:
        out = []
        if self.head is not None:
            out.append(
                f"树头：大小 {self.head.tree_size}，根哈希 {self.head.root_hash.hex()}，"
                f"签发于 {self.head.timestamp}"
            )
        out.extend(f"✓ {check}" for check in self.checks)
        if self.ok:
            out.append("校验通过：导出与签名树头一致，没有发现篡改。")
        else:
            out.append(f"校验失败：发现 {len(self.findings) + self.more} 处问题。")
            out.extend(f"✗ {finding.message}" for finding in self.findings)
            if self.more:
                out.append(f"……另有 {self.more} 处问题未列出。")
        return "\n".join(out)


def _short(digest: bytes) -> str:
    return digest.hex()[:16] + "…"


def verify_export(
    lines: Iterable[bytes], public_key: Ed25519PublicKey, earlier: TreeHead | None = None
) -> Report:
    report = Report()
    rows = iter(lines)
    try:
        header = parse_header(next(rows))
    except StopIteration:
        report.add("format", None, "导出文件是空的。")
        return report
    except ValueError as exc:
        report.add("format", None, f"导出文件第 1 行不是导出头：{exc}")
        return report
    head = report.head = header.tree_head
    _check_signatures(report, head, public_key, earlier)
    if earlier is not None and not header.from_seq <= earlier.tree_size <= head.tree_size:
        report.add(
            "consistency",
            None,
            f"无法核对较早的树头（大小 {earlier.tree_size}）：本导出覆盖序号 "
            f"{header.from_seq}–{head.tree_size - 1}；请导出从序号 0 起到不早于该树头的记录。",
        )
        earlier = None
    _check_entries(report, header, rows, earlier)
    return report


def _check_signatures(
    report: Report, head: TreeHead, key: Ed25519PublicKey, earlier: TreeHead | None
) -> None:
    if verify_head(head, key):
        report.checks.append("树头的签名有效。")
    else:
        report.add("signature", None, "树头的签名无效：它不是用这把公钥签发的，或已被改动。")
    if earlier is None:
        return
    if verify_head(earlier, key):
        report.checks.append(f"较早树头（大小 {earlier.tree_size}）的签名有效。")
    else:
        report.add("signature", None, f"较早树头（大小 {earlier.tree_size}）的签名无效。")


def _check_entries(
    report: Report, header: Header, rows: Iterable[bytes], earlier: TreeHead | None
) -> None:
    head = header.tree_head
    try:
        frontier = Frontier(header.from_seq, header.prefix)
    except ValueError:
        report.add("format", None, f"导出头的 prefix 不是前 {header.from_seq} 条记录的子树哈希。")
        return
    earlier_root = frontier.root() if earlier and earlier.tree_size == frontier.size else None
    # Positions whose entry does not hash to the committed leaf: (entry's hash or None, leaf).
    suspects: dict[int, tuple[bytes | None, bytes]] = {}
    # Once a position is missing or repeated, the leaves no longer line up with the tree.
    in_order = True
    expected = header.from_seq
    for number, raw in enumerate(rows, start=2):
        report.lines += 1
        try:
            line = parse_line(raw)
        except ValueError as exc:
            report.add("format", None, f"导出文件第 {number} 行无法读取：{exc}")
            in_order = False
            continue
        if line.seq != expected:
            _out_of_place(report, number, line.seq, expected)
            in_order = False
            if line.seq < expected:
                continue
            expected = line.seq
        expected += 1
        if line.seq >= head.tree_size:
            report.add("sequence", line.seq, f"序号 {line.seq} 超出了树头覆盖的范围。")
            continue
        if in_order:
            frontier.append(line.leaf_hash)
            if earlier is not None and frontier.size == earlier.tree_size:
                earlier_root = frontier.root()
        if line.withheld:
            report.withheld += 1
            continue
        entry_hash = None if line.canonical is None else leaf_hash(line.canonical)
        if entry_hash is None or not hmac.compare_digest(entry_hash, line.leaf_hash):
            suspects[line.seq] = (entry_hash, line.leaf_hash)
    if expected < head.tree_size:
        report.add(
            "sequence",
            expected,
            f"导出缺少序号 {_span(expected, head.tree_size - 1)} 的记录（文件不完整）。",
        )
        in_order = False
    committed = in_order and _check_root(report, frontier, head)
    if in_order and earlier is not None and earlier_root is not None:
        if hmac.compare_digest(earlier_root, earlier.root_hash):
            report.checks.append(
                f"日志与较早树头（大小 {earlier.tree_size}）一致：此后只追加了记录。"
            )
        else:
            report.add(
                "consistency",
                None,
                f"日志与较早树头（大小 {earlier.tree_size}）不一致：前 {earlier.tree_size} 条记录"
                "在该树头签发后被改写过。",
            )
    if suspects:
        for finding in _localise(suspects, head.tree_size, committed):
            report.add(*finding)
    elif in_order:
        shown = report.lines - report.withheld
        report.checks.append(f"全部 {shown} 条记录的规范字节都与树中的叶哈希一致。")
        if report.withheld:
            report.checks.append(
                f"另有 {report.withheld} 条其他县的记录未导出内容，其叶哈希已随树根一并核对。"
            )


def _out_of_place(report: Report, number: int, seq: int, expected: int) -> None:
    if seq > expected:
        report.add(
            "sequence",
            expected,
            f"导出文件第 {number} 行：缺少序号 {_span(expected, seq - 1)} 的记录"
            f"（下一行是序号 {seq}）。",
        )
    else:
        report.add(
            "sequence",
            seq,
            f"导出文件第 {number} 行：序号 {seq} 重复或顺序错乱（此处应为序号 {expected}）。",
        )


def _check_root(report: Report, frontier: Frontier, head: TreeHead) -> bool:
    root = frontier.root()
    if hmac.compare_digest(root, head.root_hash):
        report.checks.append(
            f"由树中 {head.tree_size} 个叶哈希重算的根哈希与树头一致（每条记录都包含在树中）。"
        )
        return True
    report.add(
        "root",
        None,
        f"由导出重算的根哈希 {_short(root)} 与签名树头的 {_short(head.root_hash)} 不符："
        "导出中的叶哈希被改动过，或树本身被改写。",
    )
    return False


def _span(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}–{last}"


def _localise(
    suspects: dict[int, tuple[bytes | None, bytes]], tree_size: int, committed: bool
) -> list[tuple[str, int, str]]:
    """Name what happened at each position whose entry does not match the committed leaf.

    An entry whose hash is committed at another suspect position was moved there; a committed
    leaf whose entry appears nowhere was removed (or altered in place); an entry that matches
    no committed leaf was altered (or inserted, when the position's own entry moved away).
    """
    basis = "" if committed else "（注意：树头的根哈希也不符，以下比对所依据的叶哈希未经证实）"
    position_of = {leaf: seq for seq, (_, leaf) in suspects.items()}
    # log position -> position its entry is found at, and back
    found_at: dict[int, int] = {}
    for seq, (entry_hash, _) in suspects.items():
        if entry_hash is not None and entry_hash in position_of:
            found_at[position_of[entry_hash]] = seq
    holds = {seq: origin for origin, seq in found_at.items()}
    findings: list[tuple[str, int, str]] = []
    pushed_out: set[int] = set()
    for first, last, offset in _runs(holds):
        origin = first - offset
        if last == first and holds.get(origin) == first:
            if origin > first:  # a swap shows as two runs; name it once
                findings.append(
                    ("moved", first, f"序号 {first} 与序号 {origin} 的记录被调换了顺序。{basis}")
                )
            continue
        message = (
            f"序号 {_span(first, last)} 处是日志中序号 {_span(origin, last - offset)} 的记录："
            f"{'整体' if last > first else ''}{'后' if offset > 0 else '前'}移了 {abs(offset)} 位。"
        )
        if offset > 0 and last == tree_size - 1:
            pushed_out.update(range(last - offset + 1, last + 1))
            message += f"日志中序号 {_span(last - offset + 1, last)} 的记录被挤出了树头覆盖的范围。"
        findings.append(("moved", first, message + basis))
    for seq in sorted(suspects):
        entry_hash, leaf = suspects[seq]
        moved_away = seq in found_at
        if seq in holds:
            if not moved_away and seq not in pushed_out:
                findings.append(
                    (
                        "removed",
                        seq,
                        f"序号 {seq} 的记录已被删除：日志记下的叶哈希 {_short(leaf)} "
                        f"在导出中找不到对应的记录。{basis}",
                    )
                )
        elif entry_hash is None:
            if not moved_away:
                findings.append(
                    (
                        "removed",
                        seq,
                        f"序号 {seq} 的记录已被删除：数据库中已没有这条记录，"
                        f"日志记下的叶哈希是 {_short(leaf)}。{basis}",
                    )
                )
        elif moved_away:
            findings.append(
                (
                    "inserted",
                    seq,
                    f"序号 {seq} 处插入了日志中没有的记录（叶哈希 "
                    f"{_short(entry_hash)}），原记录被后移。{basis}",
                )
            )
        else:
            findings.append(
                (
                    "altered",
                    seq,
                    f"序号 {seq} 的记录被篡改：其规范字节的叶哈希为 "
                    f"{_short(entry_hash)}，日志记下的是 {_short(leaf)}。{basis}",
                )
            )
    # What happened to an entry before where the entries after it went.
    findings.sort(key=lambda finding: (finding[1], finding[0] == "moved"))
    return findings


def _runs(holds: dict[int, int]) -> list[tuple[int, int, int]]:
    """Consecutive positions holding entries moved by the same offset: (first, last, offset)."""
    runs: list[tuple[int, int, int]] = []
    for seq in sorted(holds):
        offset = seq - holds[seq]
        if runs and runs[-1][1] == seq - 1 and runs[-1][2] == offset:
            runs[-1] = (runs[-1][0], seq, offset)
        else:
            runs.append((seq, seq, offset))
    return runs
