"""docs/benchmarks.md's generated tables are what the result files say (benchmarks/docs.py)."""

from benchmarks import docs
from benchmarks.lib import docfmt


def test_generated_tables_match_the_results():
    text = docs.DOC.read_text()
    _, stale = docs.render(text)
    assert not stale, f"regenerate with: python -m benchmarks.docs (stale: {stale})"
    present = {m.group("name") for m in docs.BLOCK.finditer(text)}
    assert present == set(docs.RENDERERS), f"blocks in the doc {present} vs renderers {set(docs.RENDERERS)}"


def test_a_changed_result_makes_its_block_stale(monkeypatch):
    text = docs.DOC.read_text()
    real = docfmt.load

    def edited(name):
        out = real(name)
        if name == "history_ml1m":
            out["rows"][0]["history_auc"] += 0.01
        return out

    monkeypatch.setattr(docfmt, "load", edited)
    _, stale = docs.render(text)
    assert stale == ["history_ml1m"]


def test_every_table_in_the_doc_is_generated():
    """A markdown table outside the generated blocks is a hand-copied number that can drift from its result."""
    text = docs.BLOCK.sub("", docs.DOC.read_text())
    by_hand = [line for line in text.splitlines() if line.lstrip().startswith("|")]
    assert not by_hand, f"tables written by hand in docs/benchmarks.md: {by_hand[:3]}"
