"""Id dictionaries: append-only indices, late data never renumbers, rebuild equals incremental."""

from datetime import date

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys_assets.core import dictionaries as d


def write_stats(path, rows):
    """user_daily_stats-like file: (day, user_id, impressions, organic_watches)."""
    day, uid, imp, org = zip(*rows, strict=False)
    table = pa.table(
        {
            "day": pa.array(day, pa.date32()),
            "user_id": pa.array(uid, pa.int64()),
            "impressions": pa.array(imp, pa.int64()),
            "organic_watches": pa.array(org, pa.int64()),
        }
    )
    pq.write_table(table, path)
    return path


@pytest.fixture
def users(tmp_path):
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    path = tmp_path / "users.parquet"
    con.execute(
        f"COPY (SELECT * FROM (VALUES (1, NULL::TIMESTAMPTZ), (2, NULL), (3, NULL), (4, NULL)) "
        f"AS t(user_id, registered_at)) TO '{path}'"
    )
    return path


def read(path):
    return {r["id"]: r for r in pq.read_table(path).to_pylist()}


def test_new_ids_append_and_old_ids_keep_their_index(tmp_path, users):
    day1 = write_stats(tmp_path / "d1.parquet", [(date(2026, 1, 1), 3, 5, 0), (date(2026, 1, 1), 1, 2, 1)])
    day2 = write_stats(tmp_path / "d2.parquet", [(date(2026, 1, 2), 2, 1, 0), (date(2026, 1, 2), 3, 4, 0)])
    out = tmp_path / "dict.parquet"
    d.update_id_dictionary(d.USERS, out, [day1], users, out)
    first = read(out)
    # day 1 ids by (first_seen_day, id); ids never seen (no registration date either) come last
    assert [first[i]["index"] for i in (1, 3, 2, 4)] == [0, 1, 2, 3]

    d.update_id_dictionary(d.USERS, out, [day1, day2], users, out)
    second = read(out)
    assert all(second[i]["index"] == first[i]["index"] for i in first)
    assert second[3]["frequency"] == 9 and second[3]["last_seen_day"] == date(2026, 1, 2)

    # from scratch over the same in-order data: the same mapping
    scratch = tmp_path / "scratch.parquet"
    d.update_id_dictionary(d.USERS, None, [day1, day2], users, scratch)
    assert {i: r["index"] for i, r in read(scratch).items()} == {i: r["index"] for i, r in second.items()}


def test_late_data_for_an_old_day_renumbers_nobody(tmp_path, users):
    day5 = write_stats(tmp_path / "d5.parquet", [(date(2026, 1, 5), 1, 1, 0), (date(2026, 1, 5), 2, 1, 0)])
    out = tmp_path / "dict.parquet"
    d.update_id_dictionary(d.USERS, None, [day5], users, out)
    before = {i: r["index"] for i, r in read(out).items()}
    # user 4 shows up in late data for day 1, earlier than anyone else
    late = write_stats(tmp_path / "d1.parquet", [(date(2026, 1, 1), 4, 3, 0)])
    d.update_id_dictionary(d.USERS, out, [late, day5], users, out)
    after = read(out)
    assert {i: after[i]["index"] for i in before} == before
    assert after[4]["first_seen_day"] == date(2026, 1, 1)
    assert sorted(r["index"] for r in after.values()) == list(range(len(after)))

    # a brand-new user 5 arrives in late data for day 1: it is appended, nobody moves
    more_users = tmp_path / "users2.parquet"
    duckdb.connect().execute(f"COPY (SELECT * FROM '{users}' UNION ALL SELECT 5, NULL) TO '{more_users}'")
    late5 = write_stats(tmp_path / "d1b.parquet", [(date(2026, 1, 1), 5, 2, 0)])
    d.update_id_dictionary(d.USERS, out, [late, late5, day5], more_users, out)
    final = read(out)
    assert final[5]["index"] == len(before) and final[5]["first_seen_day"] == date(2026, 1, 1)
    assert {i: final[i]["index"] for i in before} == before
