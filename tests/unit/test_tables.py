"""The one MERGE of the project, on real Delta tables in a temporary lake: counts, idempotency, conditions."""
from __future__ import annotations

from contextlib import contextmanager

import pytest

from fitbit_lakehouse.tables import KeyRange, Lake, Txn, WriteMetrics


@pytest.fixture()
def lake(spark, base_settings, tmp_path):
    return Lake(spark, base_settings.with_overrides(**{"paths.lake_dir": str(tmp_path / "lake")}))


def _rows(lake, name):
    return sorted(tuple(r) for r in lake.read("t", name).collect())


def test_first_write_creates_the_table_and_counts(spark, lake):
    source = spark.createDataFrame([(1, "a"), (2, "b")], "id bigint, v string")
    metrics = lake.merge(source, "t", "x", ("id",), update="t.v <> s.v", properties={"delta.enableChangeDataFeed": "true"})
    assert (metrics.inserted, metrics.updated, metrics.deleted) == (2, 0, 0)
    assert _rows(lake, "x") == [(1, "a"), (2, "b")]
    properties = dict(spark.sql(f"SHOW TBLPROPERTIES delta.`{lake.path('t', 'x')}`").collect())
    assert properties["delta.enableChangeDataFeed"] == "true"


def test_update_and_insert_counts_come_from_the_commit(spark, lake):
    lake.merge(spark.createDataFrame([(1, "a"), (2, "b")], "id bigint, v string"), "t", "x", ("id",))
    source = spark.createDataFrame([(1, "a"), (2, "B"), (3, "c")], "id bigint, v string")
    metrics = lake.merge(source, "t", "x", ("id",), update="t.v <> s.v", txn=Txn("app", 1))
    assert (metrics.inserted, metrics.updated) == (1, 1)
    assert _rows(lake, "x") == [(1, "a"), (2, "B"), (3, "c")]


def test_a_replayed_write_is_skipped_and_its_counts_found_again(spark, lake):
    lake.merge(spark.createDataFrame([(1, "a")], "id bigint, v string"), "t", "x", ("id",))
    batch = spark.createDataFrame([(2, "b"), (3, "c")], "id bigint, v string")
    first = lake.merge(batch, "t", "x", ("id",), txn=Txn("app", 7))
    version = lake.version("t", "x")
    # the same batch again (after a crash before the checkpoint), even with other content: skipped
    replay = lake.merge(spark.createDataFrame([(4, "d")], "id bigint, v string"), "t", "x", ("id",), txn=Txn("app", 7))
    assert lake.version("t", "x") == version
    assert replay == first and first.inserted == 2
    assert _rows(lake, "x") == [(1, "a"), (2, "b"), (3, "c")]
    # another app id (a new checkpoint) is not skipped
    lake.merge(spark.createDataFrame([(4, "d")], "id bigint, v string"), "t", "x", ("id",), txn=Txn("app2", 0))
    assert len(_rows(lake, "x")) == 4


def test_rows_stored_as_they_are_write_no_version_and_only_a_changed_row_is_merged(spark, lake):
    """A batch the table holds already (a replay, bronze read again) writes nothing: Delta's MERGE would
    rewrite every file where a key matched, though no row changes. A changed row among such rows is
    merged alone; its write replayed finds its counts again."""
    schema = "id bigint, v string"
    lake.merge(spark.createDataFrame([(1, "a"), (2, "b"), (3, None)], schema), "t", "x", ("id",))
    version = lake.version("t", "x")
    # (3, "c"): the update condition is null against the stored null, so the MERGE would keep (3, None)
    same = spark.createDataFrame([(1, "a"), (2, "b"), (3, "c")], schema)
    assert lake.merge(same, "t", "x", ("id",), update="t.v <> s.v", txn=Txn("app", 1)) == WriteMetrics()
    assert lake.version("t", "x") == version

    changed = spark.createDataFrame([(1, "a"), (2, "B"), (3, "c")], schema)
    metrics = lake.merge(changed, "t", "x", ("id",), update="t.v <> s.v", txn=Txn("app", 2))
    assert (metrics.inserted, metrics.updated) == (0, 1)
    assert lake.history("t", "x", 1)[0]["operationMetrics"]["numSourceRows"] == "1"
    version = lake.version("t", "x")
    assert lake.merge(changed, "t", "x", ("id",), update="t.v <> s.v", txn=Txn("app", 2)) == metrics
    assert lake.version("t", "x") == version
    assert _rows(lake, "x") == [(1, "a"), (2, "B"), (3, None)]


def test_an_insert_only_write_of_stored_keys_writes_no_version(spark, lake):
    """No update condition: a stored key is kept as it is (quarantine, user identities), so a batch of
    stored keys only writes nothing, and a new key among them is inserted alone."""
    schema = "id bigint, v string"
    lake.merge(spark.createDataFrame([(1, "a"), (2, "b")], schema), "t", "x", ("id",))
    version = lake.version("t", "x")
    assert lake.merge(spark.createDataFrame([(1, "A"), (2, "b")], schema), "t", "x", ("id",),
                      txn=Txn("app", 1)) == WriteMetrics()
    assert lake.version("t", "x") == version
    metrics = lake.merge(spark.createDataFrame([(2, "B"), (3, "c")], schema), "t", "x", ("id",), txn=Txn("app", 2))
    assert (metrics.inserted, metrics.updated) == (1, 0)
    assert lake.history("t", "x", 1)[0]["operationMetrics"]["numSourceRows"] == "1"
    assert _rows(lake, "x") == [(1, "a"), (2, "b"), (3, "c")]


def test_a_replayed_first_write_is_skipped_too(spark, lake):
    batch = spark.createDataFrame([(1, "a")], "id bigint, v string")
    assert lake.merge(batch, "t", "x", ("id",), txn=Txn("app", 0)).inserted == 1
    assert lake.merge(batch, "t", "x", ("id",), txn=Txn("app", 0)).inserted == 1
    assert _rows(lake, "x") == [(1, "a")]


def test_tombstones_delete_and_helper_columns_stay_out(spark, lake):
    lake.merge(spark.createDataFrame([(1, "a"), (2, "b")], "id bigint, v string"), "t", "x", ("id",))
    source = spark.createDataFrame([(1, "a", True), (3, "c", False), (4, "d", True)],
                                   "id bigint, v string, _deleted boolean")
    metrics = lake.merge(source, "t", "x", ("id",), columns=["id", "v"], delete="s._deleted",
                         update="NOT s._deleted AND t.v <> s.v", insert="NOT s._deleted")
    assert (metrics.inserted, metrics.deleted) == (1, 1)
    assert _rows(lake, "x") == [(2, "b"), (3, "c")]
    assert lake.read("t", "x").columns == ["id", "v"]


def test_target_filter_limits_what_can_match(spark, lake):
    lake.merge(spark.createDataFrame([(1, "a"), (2, "b")], "id bigint, v string"), "t", "x", ("id",))
    source = spark.createDataFrame([(1, "A"), (2, "B")], "id bigint, v string")
    lake.merge(source, "t", "x", ("id",), update="t.v <> s.v", insert=None, target_filter=KeyRange(values=(("id", (2,)),)))
    assert _rows(lake, "x") == [(1, "a"), (2, "B")]


def test_rows_no_stored_row_can_match_are_appended_exactly_once(spark, lake):
    lake.merge(spark.createDataFrame([(1, "a"), (2, "b")], "id bigint, v string"), "t", "x", ("id",))
    new_days = spark.createDataFrame([(3, "c"), (4, "d")], "id bigint, v string")
    metrics = lake.merge(new_days, "t", "x", ("id",), update="t.v <> s.v", target_filter=KeyRange(bounds=(("id", 3, 4),)),
                         txn=Txn("app", 1))
    assert metrics.inserted == 2
    assert lake.delta("t", "x").history(1).first()["operation"] == "WRITE"   # no MERGE was needed
    # replayed after a crash: the append's commit is found again, nothing is written twice
    version = lake.version("t", "x")
    assert lake.merge(new_days, "t", "x", ("id",), update="t.v <> s.v", target_filter=KeyRange(bounds=(("id", 3, 4),)),
                      txn=Txn("app", 1)).inserted == 2
    assert lake.version("t", "x") == version
    # a stored row within the filter: a real MERGE, which updates it
    changed = spark.createDataFrame([(4, "D"), (5, "e")], "id bigint, v string")
    metrics = lake.merge(changed, "t", "x", ("id",), update="t.v <> s.v", target_filter=KeyRange(bounds=(("id", 4, 5),)))
    assert (metrics.inserted, metrics.updated) == (1, 1)
    assert lake.delta("t", "x").history(1).first()["operation"] == "MERGE"
    assert _rows(lake, "x") == [(1, "a"), (2, "b"), (3, "c"), (4, "D"), (5, "e")]



def test_a_range_that_meets_stored_rows_with_none_of_their_keys_is_appended(spark, lake):
    """A stream's batch often begins on the minute the last one ended on, for other users: the ranges
    meet, no key does, so the batch is appended (one commit, no MERGE)."""
    schema = "id bigint, t int, v string"
    lake.merge(spark.createDataFrame([(1, 10, "a"), (2, 10, "b")], schema), "t", "k", ("id", "t"))
    batch = spark.createDataFrame([(3, 10, "c"), (1, 11, "d")], schema)
    metrics = lake.merge(batch, "t", "k", ("id", "t"), update="t.v <> s.v", txn=Txn("app", 1),
                         target_filter=KeyRange(bounds=(("t", 10, 11),), values=(("id", (1, 3)),)))
    assert metrics.inserted == 2
    assert _history(lake, "k", 1) == [("WRITE", "app@1")]
    assert _rows(lake, "k") == [(1, 10, "a"), (1, 11, "d"), (2, 10, "b"), (3, 10, "c")]
    # replayed: found again, nothing twice
    version = lake.version("t", "k")
    assert lake.merge(batch, "t", "k", ("id", "t"), update="t.v <> s.v", txn=Txn("app", 1),
                      target_filter=KeyRange(bounds=(("t", 10, 11),), values=(("id", (1, 3)),))).inserted == 2
    assert lake.version("t", "k") == version


def _history(lake, name, n):
    return [(c["operation"], c["userMetadata"]) for c in lake.history("t", name, n)][::-1]


def test_rows_past_the_stored_end_are_appended_and_only_the_overlap_merged(spark, lake):
    lake.merge(spark.createDataFrame([(i, "a") for i in range(1, 5)], "id bigint, v string"), "t", "x", ("id",))
    # a batch that starts inside the stored range (3, 4) and runs past it (5 to 7)
    batch = spark.createDataFrame([(3, "C"), (4, "a"), (5, "e"), (6, "f"), (7, "g")], "id bigint, v string")
    write = dict(update="t.v <> s.v", target_filter=KeyRange(bounds=(("id", 3, 7),)), txn=Txn("app", 1))
    metrics = lake.merge(batch, "t", "x", ("id",), **write)
    assert (metrics.inserted, metrics.updated) == (3, 1)
    assert _history(lake, "x", 2) == [("WRITE", "app/past-stored@1"), ("MERGE", "app@1")]
    merged = lake.history("t", "x", 1)[0]["operationMetrics"]
    assert int(merged["numSourceRows"]) == 1   # the MERGE saw only the overlap's changed row, (3, "C")
    assert _rows(lake, "x") == [(1, "a"), (2, "a"), (3, "C"), (4, "a"), (5, "e"), (6, "f"), (7, "g")]
    # replayed after a crash before the checkpoint: both commits found again, nothing written twice
    version = lake.version("t", "x")
    assert lake.merge(batch, "t", "x", ("id",), **write) == metrics
    assert lake.version("t", "x") == version


def test_a_crash_between_the_append_and_the_merge_loses_and_doubles_nothing(spark, lake):
    lake.merge(spark.createDataFrame([(i, "a") for i in range(1, 5)], "id bigint, v string"), "t", "x", ("id",))
    batch = spark.createDataFrame([(3, "C"), (4, "a"), (5, "e"), (6, "f"), (7, "g")], "id bigint, v string")
    txn = Txn("app", 1)
    # the first attempt appended the rows past the stored end (ids above 4), then died
    lake.append(batch.where("id > 4"), "t", "x", txn=txn.part("past-stored"))
    metrics = lake.merge(batch, "t", "x", ("id",), update="t.v <> s.v",
                         target_filter=KeyRange(bounds=(("id", 3, 7),)), txn=txn)
    assert (metrics.inserted, metrics.updated) == (3, 1)   # as if it had not died
    assert _rows(lake, "x") == [(1, "a"), (2, "a"), (3, "C"), (4, "a"), (5, "e"), (6, "f"), (7, "g")]


def test_the_stored_end_of_times_allows_for_statistics_kept_to_the_millisecond(spark, lake):
    import datetime as dt

    minute = lambda m: dt.datetime(2016, 5, 12, 23, m)  # noqa: E731
    schema = "id bigint, t timestamp_ntz, v string"
    lake.merge(spark.createDataFrame([(1, minute(m), "a") for m in range(3)], schema), "t", "m", ("id", "t"))
    batch = spark.createDataFrame([(1, minute(2), "a"), (1, minute(3), "b"), (1, minute(4), "c")], schema)
    metrics = lake.merge(batch, "t", "m", ("id", "t"), update="t.v <> s.v", txn=Txn("app", 0),
                         target_filter=KeyRange(bounds=(("t", minute(2), minute(4)),), values=(("id", (1,)),)))
    assert (metrics.inserted, metrics.updated) == (2, 0)
    # the rows past the stored end appended; the overlap, a row stored as it is, writes nothing
    assert _history(lake, "m", 1) == [("WRITE", "app/past-stored@0")]
    assert len(_rows(lake, "m")) == 5
    # replayed after a crash before the checkpoint: the append found again, the overlap still nothing
    version = lake.version("t", "m")
    assert lake.merge(batch, "t", "m", ("id", "t"), update="t.v <> s.v", txn=Txn("app", 0),
                      target_filter=KeyRange(bounds=(("t", minute(2), minute(4)),), values=(("id", (1,)),))) == metrics
    assert lake.version("t", "m") == version

def test_key_range_against_file_statistics():
    day = KeyRange(bounds=(("day", 20160613, 20160614),), values=(("id", (5, 9)),))
    assert day.excludes({"min.day": 20160412, "max.day": 20160512, "min.id": 1, "max.id": 9})   # days before
    assert day.excludes({"min.day": 20160601, "max.day": 20160630, "min.id": 6, "max.id": 8})   # ids between
    assert not day.excludes({"min.day": 20160601, "max.day": 20160630, "min.id": 1, "max.id": 5})
    assert not day.excludes({"min.day": None, "max.day": None, "min.id": 6, "max.id": 8} | {"min.id": 1})
    assert not day.excludes({})   # no statistics: may hold anything
    prefix = KeyRange(values=(("k", ("b",)),))
    assert prefix.excludes({"min.k": "c", "max.k": "d"})
    assert not prefix.excludes({"min.k": "c", "max.k": "d" * 32})   # a cut max says nothing
    import datetime as dt

    minute = KeyRange(bounds=(("t", dt.datetime(2016, 5, 12, 23, 59, 0, 500), dt.datetime(2016, 5, 13)),))
    assert not minute.excludes({"min.t": dt.datetime(2016, 5, 1), "max.t": dt.datetime(2016, 5, 12, 23, 59)})


def test_no_stored_row_in_range_is_told_by_the_statistics_alone(spark, lake, monkeypatch):
    lake.merge(spark.createDataFrame([(1, "a"), (2, "b")], "id bigint, v string"), "t", "x", ("id",))
    monkeypatch.setattr(lake, "read", lambda *a, **k: pytest.fail("the statistics should have answered"))
    assert lake.holds_none("t", "x", KeyRange(bounds=(("id", 3, 4),)))
    monkeypatch.undo()
    assert not lake.holds_none("t", "x", KeyRange(bounds=(("id", 2, 4),)))
    # statistics that overlap the range without a row in it (no id 1 with v "b"): the query decides
    assert lake.holds_none("t", "x", KeyRange(values=(("id", (1,)),), bounds=(("v", "b", "b"),)))


@contextmanager
def _compaction_after(spark, settings, small_files: int):
    """Delta's auto compaction as `make stream` sets it (stream.delta_conf), after this many small files."""
    conf = {**settings.get("stream.delta_conf"), "spark.databricks.delta.autoCompact.minNumFiles": small_files}
    before = {key: spark.conf.get(key, None) for key in conf}
    for key, value in conf.items():
        spark.conf.set(key, str(value))
    try:
        yield
    finally:
        for key, value in before.items():
            spark.conf.unset(key) if value is None else spark.conf.set(key, value)


def test_auto_compaction_after_a_merge_leaves_the_merge_its_counts(spark, lake, base_settings):
    """A long stream's small files are compacted by Delta right after the write that made them many;
    that commit carries the MERGE's tag (set on the session) but writes no row: each write's counts,
    a replay's included, are still its own, the rows unchanged, and the change feed holds no more."""
    lake.merge(spark.createDataFrame([(0, "a")], "id bigint, v string"), "t", "x", ("id",),
               properties={"delta.enableChangeDataFeed": "true"})
    counts = {}
    with _compaction_after(spark, base_settings, 2):
        for batch in range(1, 4):
            rows = spark.createDataFrame([(batch * 10 + i, "b") for i in range(batch)], "id bigint, v string")
            counts[batch] = lake.merge(rows, "t", "x", ("id",), txn=Txn("app", batch)).inserted
    compactions = [tag for operation, tag in _history(lake, "x", None) if operation == "OPTIMIZE"]
    assert compactions and set(compactions) <= {Txn("app", batch).tag for batch in counts}   # the MERGEs' tags
    assert counts == {batch: batch for batch in range(1, 4)}
    assert lake.merge(spark.createDataFrame([(99, "z")], "id bigint, v string"), "t", "x", ("id",),
                      txn=Txn("app", 3)).inserted == 3   # a replay: skipped, the counts found again
    assert _rows(lake, "x") == sorted([(0, "a")] + [(b * 10 + i, "b") for b in range(1, 4) for i in range(b)])
    inserted = lake.changes("t", "x", 1, lake.version("t", "x")).where("_change_type = 'insert'").count()
    assert inserted == sum(counts.values())
    live_files = spark.sql(f"DESCRIBE DETAIL delta.`{lake.path('t', 'x')}`").first()["numFiles"]
    assert live_files < 1 + len(counts)
