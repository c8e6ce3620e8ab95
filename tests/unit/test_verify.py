"""The offline verifier on exports built in memory: clean ones pass, and each kind of tampering,
in the database or in the file, is named by the entry it touched."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.launcher.cli import main
from services.ledger.export import entry_line, header_line
from services.ledger.heads import HeadSigner, TreeHead, public_key_pem
from services.ledger.merkle import Frontier, canonical_bytes, leaf_hash
from services.ledger.verify import Report, verify_export

SIZE = 60
NOW = datetime(2026, 11, 21, 8, tzinfo=UTC)


def event(n: int) -> bytes:
    return canonical_bytes(
        {"id": f"0193-{n:04d}", "type": "whistle.case.assigned", "data": {"note": f"第{n}件"}}
    )


ENTRIES = [event(n) for n in range(SIZE)]
LEAVES = [leaf_hash(e) for e in ENTRIES]
FORGED = event(999)


@pytest.fixture(scope="module")
def signer() -> HeadSigner:
    return HeadSigner(Ed25519PrivateKey.generate())


def head_over(signer: HeadSigner, leaves: list[bytes]) -> TreeHead:
    frontier = Frontier()
    for leaf in leaves:
        frontier.append(leaf)
    return signer.sign(len(leaves), frontier.root(), NOW)


def export(
    head: TreeHead,
    entries: list[bytes | None] | None = None,
    leaves: list[bytes] = LEAVES,
    from_seq: int = 0,
) -> list[bytes]:
    """What GET /v1/export writes when the database holds ``entries`` at each position and the
    tree committed ``leaves``."""
    held = ENTRIES if entries is None else entries
    prefix = Frontier()
    for leaf in leaves[:from_seq]:
        prefix.append(leaf)
    return [
        header_line(from_seq, prefix.hashes, head),
        *(entry_line(seq, leaves[seq], held[seq]) for seq in range(from_seq, head.tree_size)),
    ]


def verify(signer: HeadSigner, lines: list[bytes], earlier: TreeHead | None = None) -> Report:
    return verify_export(lines, signer.public_key(), earlier)


def kinds(report: Report) -> set[tuple[str, int | None]]:
    return {(finding.kind, finding.seq) for finding in report.findings}


def test_a_clean_export_verifies(signer: HeadSigner) -> None:
    report = verify(signer, export(head_over(signer, LEAVES)))
    assert report.ok, report.render()
    assert report.lines == SIZE
    assert "校验通过" in report.render()
    assert len(report.checks) == 3  # signature, root, every entry


def test_an_export_from_a_later_sequence_number_verifies(signer: HeadSigner) -> None:
    head = head_over(signer, LEAVES)
    for from_seq in (1, 20, 32, SIZE):
        report = verify(signer, export(head, from_seq=from_seq))
        assert report.ok, (from_seq, report.render())
        assert report.lines == SIZE - from_seq


def _altered(entries: list[bytes | None]) -> None:
    entries[41] = FORGED


def _removed(entries: list[bytes | None]) -> None:
    entries[41] = None


def _removed_and_renumbered(entries: list[bytes | None]) -> None:
    entries[41:] = [*entries[42:], None]


def _inserted_and_renumbered(entries: list[bytes | None]) -> None:
    entries[41:] = [FORGED, *entries[41:-1]]


def _swapped(entries: list[bytes | None]) -> None:
    entries[41], entries[42] = entries[42], entries[41]


def _moved_later(entries: list[bytes | None]) -> None:
    entries[41:46] = [*entries[42:46], entries[41]]


@pytest.mark.parametrize(
    ("tamper", "expected", "wording"),
    [
        (_altered, {("altered", 41)}, "序号 41 的记录被篡改"),
        (_removed, {("removed", 41)}, "序号 41 的记录已被删除"),
        (
            _removed_and_renumbered,
            {("removed", 41), ("moved", 41)},
            "序号 41–58 处是日志中序号 42–59 的记录：整体前移了 1 位",
        ),
        (
            _inserted_and_renumbered,
            {("inserted", 41), ("moved", 42)},
            "日志中序号 59 的记录被挤出了树头覆盖的范围",
        ),
        (_swapped, {("moved", 41)}, "序号 41 与序号 42 的记录被调换了顺序"),
        (_moved_later, {("moved", 41), ("moved", 45)}, "序号 45 处是日志中序号 41 的记录"),
    ],
)
def test_tampering_in_the_database_is_named_by_entry(
    signer: HeadSigner,
    tamper: Callable[[list[bytes | None]], None],
    expected: set[tuple[str, int]],
    wording: str,
) -> None:
    """Rows changed after the tree committed to them: the tree still proves the signed root,
    and each entry that no longer matches its leaf is named, with what happened to it."""
    entries: list[bytes | None] = list(ENTRIES)
    tamper(entries)
    report = verify(signer, export(head_over(signer, LEAVES), entries))
    assert kinds(report) == expected, report.render()
    assert wording in report.render()
    assert any("根哈希与树头一致" in check for check in report.checks)


def test_lines_removed_reordered_or_cut_off_in_the_file_are_named(signer: HeadSigner) -> None:
    lines = export(head_over(signer, LEAVES))
    without = [*lines[:42], *lines[43:]]  # line 43 holds entry 41
    assert kinds(verify(signer, without)) == {("sequence", 41)}
    assert "缺少序号 41 的记录" in verify(signer, without).render()

    swapped = [*lines[:42], lines[43], lines[42], *lines[44:]]
    report = verify(signer, swapped)
    assert ("sequence", 41) in kinds(report)
    assert "序号 41 重复或顺序错乱" in report.render()

    repeated = [*lines[:43], lines[42], *lines[43:]]
    assert ("sequence", 41) in kinds(verify(signer, repeated))

    truncated = lines[:-5]
    report = verify(signer, truncated)
    assert kinds(report) == {("sequence", 55)}
    assert "缺少序号 55–59 的记录（文件不完整）" in report.render()


def test_an_entry_edited_in_the_file_is_named_and_a_consistent_edit_breaks_the_root(
    signer: HeadSigner,
) -> None:
    lines = export(head_over(signer, LEAVES))
    line = json.loads(lines[42])
    line["canonical"] = FORGED.decode()
    edited = [*lines[:42], json.dumps(line).encode(), *lines[43:]]
    assert kinds(verify(signer, edited)) == {("altered", 41)}

    line["leaf_hash"] = leaf_hash(FORGED).hex()
    recomputed = [*lines[:42], json.dumps(line).encode(), *lines[43:]]
    report = verify(signer, recomputed)
    assert kinds(report) == {("root", None)}
    assert "与签名树头的" in report.render()


def test_a_forged_or_foreign_head_fails_its_signature(signer: HeadSigner) -> None:
    head = head_over(signer, LEAVES)
    header = json.loads(export(head)[0])
    header["tree_head"]["tree_size"] = SIZE - 1
    lines = [json.dumps(header).encode(), *export(head)[1:-1]]
    assert ("signature", None) in kinds(verify(signer, lines))

    stranger = HeadSigner(Ed25519PrivateKey.generate())
    assert kinds(verify(stranger, export(head))) == {("signature", None)}


def test_an_earlier_head_is_checked_for_consistency(signer: HeadSigner) -> None:
    head = head_over(signer, LEAVES)
    kept = head_over(signer, LEAVES[:30])
    report = verify(signer, export(head), earlier=kept)
    assert report.ok, report.render()
    assert any("较早树头（大小 30）一致" in check for check in report.checks)
    assert verify(signer, export(head, from_seq=30), earlier=kept).ok
    assert verify(signer, export(head), earlier=head).ok

    # The log was rewritten below the auditor's head, then signed again.
    rewritten = [*LEAVES[:10], leaf_hash(FORGED), *LEAVES[11:]]
    entries: list[bytes | None] = [*ENTRIES[:10], FORGED, *ENTRIES[11:]]
    report = verify(signer, export(head_over(signer, rewritten), entries, rewritten), kept)
    assert kinds(report) == {("consistency", None)}
    assert "在该树头签发后被改写过" in report.render()

    for unusable in (head_over(signer, [*LEAVES, LEAVES[0]]), kept):
        report = verify(signer, export(head, from_seq=40), earlier=unusable)
        assert kinds(report) == {("consistency", None)}
        assert "无法核对较早的树头" in report.render()

    stranger = HeadSigner(Ed25519PrivateKey.generate())
    assert kinds(verify(signer, export(head), head_over(stranger, LEAVES[:30]))) == {
        ("signature", None)
    }


def test_an_unreadable_export_says_where(signer: HeadSigner) -> None:
    lines = export(head_over(signer, LEAVES))
    assert kinds(verify(signer, [])) == {("format", None)}
    assert "第 1 行不是导出头" in verify(signer, lines[1:]).render()
    broken = [*lines[:10], b"{not json", *lines[10:]]
    report = verify(signer, broken)
    assert ("format", None) in kinds(report)
    assert "导出文件第 11 行无法读取" in report.render()


def test_whistle_ledger_verify_exits_by_outcome(
    signer: HeadSigner, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "ledger.pub.pem"
    key.write_bytes(public_key_pem(signer.public_key()))
    kept = tmp_path / "head.json"
    kept.write_text(json.dumps(head_over(signer, LEAVES[:30]).to_json()))
    good, bad = tmp_path / "good.jsonl", tmp_path / "bad.jsonl"
    head = head_over(signer, LEAVES)
    good.write_bytes(b"".join(export(head)))
    entries: list[bytes | None] = list(ENTRIES)
    _altered(entries)
    bad.write_bytes(b"".join(export(head, entries)))

    assert main(["ledger", "verify", str(good), "--public-key", str(key), "--head", str(kept)]) == 0
    assert "校验通过" in capsys.readouterr().out
    assert main(["ledger", "verify", str(bad), "--public-key", str(key)]) == 1
    assert "序号 41 的记录被篡改" in capsys.readouterr().out
    assert main(["ledger", "verify", str(good), "--public-key", str(tmp_path / "none")]) == 2
    assert "无法读取公钥" in capsys.readouterr().err
    assert main(["ledger", "verify", str(good), "--public-key", str(key), "--head", str(bad)]) == 2
    assert "无法读取树头" in capsys.readouterr().err
