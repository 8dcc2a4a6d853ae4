"""read_lines splits any byte stream the same way whatever its block size: line numbers,
texts, over-long heads and UTF-8 verdicts match a plain line-by-line reference."""

from hypothesis import given, settings
from hypothesis import strategies as st

from recsys_assets.core.ingest import QUARANTINE_HEAD_BYTES, read_lines

LINE = st.one_of(
    st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")),
    st.text(max_size=30).map(lambda t: t.replace("\n", "").encode()),
    st.sampled_from([b"", b"\r", b"  ", b'{"a": 1}\r', b"\xff\xfe", b"x" * 120]),
)


def reference(data: bytes, cap: int):
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = []
    for no, raw in enumerate(lines, start=1):
        if len(raw) > cap:
            out.append(
                (no, raw[: min(QUARANTINE_HEAD_BYTES, cap)].decode("utf-8", "backslashreplace"), "line_too_long")
            )
            continue
        try:
            out.append((no, raw.decode("utf-8"), None))
        except UnicodeDecodeError:
            out.append((no, raw.decode("utf-8", "backslashreplace"), "invalid_utf8"))
    return out


@settings(max_examples=150, deadline=None)
@given(
    lines=st.lists(LINE, max_size=25),
    bom=st.booleans(),
    trailing_newline=st.booleans(),
    block=st.integers(min_value=1, max_value=64),
)
def test_block_size_never_changes_the_lines(tmp_path_factory, lines, bom, trailing_newline, block):
    data = (b"\xef\xbb\xbf" if bom else b"") + b"\n".join(lines) + (b"\n" if trailing_newline and lines else b"")
    path = tmp_path_factory.mktemp("rl") / "f.jsonl"
    path.write_bytes(data)
    cap = 100
    table = read_lines(path, max_line_bytes=cap, block_bytes=block)
    got = [
        (no, text.rstrip("\n") if reason is None or reason == "invalid_utf8" else text, reason)
        for no, text, reason in zip(
            *(table.column(c).to_pylist() for c in ("line_no", "raw_line", "pre_reason")), strict=False
        )
    ]
    assert got == reference(data, cap)
