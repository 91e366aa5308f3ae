"""Client compatibility: psycopg 3 (text, binary, prepared statements, named cursors), SQLAlchemy
(inspect(), the ORM, stream_results), pandas.

Run by tests/clients.rs against a live server: `python test_clients.py HOST PORT`.
Prints `N passed, N failed` and exits non-zero when anything failed.
"""

import datetime
import decimal
import sys
import traceback

import pandas as pd
import psycopg
import sqlalchemy as sa

HOST, PORT = sys.argv[1], int(sys.argv[2])
DSN = f"host={HOST} port={PORT} user=augur dbname=augur"
URL = f"postgresql+psycopg://augur@{HOST}:{PORT}/augur"

TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


@test
def psycopg_text_binary_and_prepared():
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE py_users (user_id BIGINT PRIMARY KEY, name TEXT NOT NULL, "
            "score DOUBLE PRECISION, balance NUMERIC(12, 2), born DATE, seen TIMESTAMP, vip BOOLEAN)"
        )
        rows = [
            (i, f"user{i}", i / 4, decimal.Decimal(f"{i}.25"), datetime.date(2000, 1, 1 + i),
             datetime.datetime(2026, 1, 1, 12, i), i % 2 == 0)
            for i in range(1, 11)
        ]
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO py_users VALUES (%s, %s, %s, %s, %s, %s, %s)", rows)
        for binary in (False, True):
            with conn.cursor(binary=binary) as cur:
                cur.execute("SELECT * FROM py_users WHERE user_id = %s", (3,))
                got = cur.fetchone()
                assert got == rows[2], (binary, got, rows[2])
                cur.execute("SELECT count(*), sum(score) FROM py_users")
                assert cur.fetchone() == (10, sum(r[2] for r in rows))
        # the same statement many times: psycopg prepares it server-side after a few runs
        with conn.cursor() as cur:
            for i in range(1, 11):
                cur.execute("SELECT name FROM py_users WHERE user_id = %s", (i,), prepare=True)
                assert cur.fetchone() == (f"user{i}",)
        with conn.cursor() as cur:
            try:
                cur.execute("INSERT INTO py_users (user_id, name) VALUES (1, 'dup')")
                raise AssertionError("duplicate key accepted")
            except psycopg.errors.UniqueViolation:
                pass


@test
def psycopg_python_numbers_into_numeric_and_integer_columns():
    # psycopg sends a Python float as float8 and an int as int8 whatever the column's type;
    # they convert as PostgreSQL's assignment casts do (numeric rounds to its scale, a float
    # rounds to the nearest integer, ties to even).
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute("CREATE TABLE py_prices (id INT PRIMARY KEY, price NUMERIC(10, 2), qty INT)")
        for binary in (False, True):
            with conn.cursor(binary=binary) as cur:
                base = 10 if binary else 0
                for i, v in enumerate([2.2, 5, decimal.Decimal("3.456"), 2.5]):
                    cur.execute("INSERT INTO py_prices VALUES (%s, %s, %s)", (base + i, v, v))
                cur.execute("SELECT price, qty FROM py_prices WHERE id >= %s AND id < %s ORDER BY id",
                            (base, base + 10))
                assert cur.fetchall() == [
                    (decimal.Decimal("2.20"), 2), (decimal.Decimal("5.00"), 5),
                    (decimal.Decimal("3.46"), 3), (decimal.Decimal("2.50"), 2),
                ], binary
                cur.execute("SELECT count(*) FROM py_prices WHERE price > %s AND id >= %s", (2.2, base))
                assert cur.fetchone() == (3,)
                cur.execute("SELECT %s::numeric(4, 1)", (3.25,))
                assert cur.fetchone() == (decimal.Decimal("3.3"),)
                try:
                    cur.execute("INSERT INTO py_prices VALUES (99, %s, 1)", (1e12,))
                    raise AssertionError("overflowing numeric accepted")
                except psycopg.errors.NumericValueOutOfRange:
                    pass
                # one UNION branch numeric, the other integer: the column is numeric
                cur.execute("SELECT 1 UNION ALL SELECT %s::numeric(3, 1) ORDER BY 1", (2.5,))
                assert cur.fetchall() == [(decimal.Decimal("1.0"),), (decimal.Decimal("2.5"),)]


@test
def psycopg_transactions():
    with psycopg.connect(DSN) as conn:  # not autocommit: psycopg sends BEGIN
        conn.execute("CREATE TABLE py_tx (a INT PRIMARY KEY)")
        conn.execute("INSERT INTO py_tx VALUES (1)")
        conn.commit()
        assert conn.execute("SELECT count(*) FROM py_tx").fetchone() == (1,)
        conn.rollback()


@test
def sqlalchemy_inspect():
    engine = sa.create_engine(URL)
    with engine.connect() as conn:
        conn.execute(sa.text("CREATE TABLE sa_items (id BIGINT PRIMARY KEY, label TEXT NOT NULL, price DOUBLE PRECISION)"))
        conn.commit()
    insp = sa.inspect(engine)
    assert "sa_items" in insp.get_table_names(), insp.get_table_names()
    assert insp.has_table("sa_items")
    assert not insp.has_table("sa_nothing")
    columns = {c["name"]: c for c in insp.get_columns("sa_items")}
    assert list(columns) == ["id", "label", "price"], list(columns)
    assert columns["label"]["nullable"] is False
    assert isinstance(columns["id"]["type"], sa.BigInteger), columns["id"]["type"]
    pk = insp.get_pk_constraint("sa_items")
    assert pk["constrained_columns"] == ["id"], pk
    assert insp.get_foreign_keys("sa_items") == []
    assert insp.get_indexes("sa_items") == [], insp.get_indexes("sa_items")
    assert "public" in insp.get_schema_names(), insp.get_schema_names()
    with engine.connect() as conn:
        conn.execute(sa.text(
            "CREATE TABLE sa_coded (id INT PRIMARY KEY, code TEXT UNIQUE, qty INT CONSTRAINT qty_positive CHECK (qty > 0))"))
        conn.commit()
    unique = insp.get_unique_constraints("sa_coded")
    assert [(u["name"], u["column_names"]) for u in unique] == [("sa_coded_code_key", ["code"])], unique
    checks = insp.get_check_constraints("sa_coded")
    assert [(c["name"], c["sqltext"]) for c in checks] == [("qty_positive", "qty > 0")], checks


@test
def sqlalchemy_reflection():
    engine = sa.create_engine(URL)
    with engine.connect() as conn:
        conn.execute(sa.text("CREATE TABLE sa_orders (id BIGINT PRIMARY KEY, amount DOUBLE PRECISION)"))
        conn.execute(sa.text("CREATE VIEW sa_big AS SELECT id FROM sa_orders WHERE amount > 100"))
        conn.execute(sa.text(
            "CREATE MATERIALIZED VIEW sa_total AS SELECT count(*) AS n, sum(amount) AS total FROM sa_orders"))
        conn.commit()
    orders = sa.Table("sa_orders", sa.MetaData(), autoload_with=engine)
    assert [c.name for c in orders.columns] == ["id", "amount"]
    assert [c.name for c in orders.primary_key.columns] == ["id"]
    meta = sa.MetaData()
    meta.reflect(engine, views=True)
    assert {"sa_orders", "sa_big", "sa_total"} <= set(meta.tables), set(meta.tables)
    insp = sa.inspect(engine)
    definition = insp.get_view_definition("sa_big")
    assert "amount > 100" in definition, definition
    assert "sa_total" in insp.get_materialized_view_names(), insp.get_materialized_view_names()


@test
def pandas_read_sql():
    engine = sa.create_engine(URL)
    with engine.connect() as conn:
        conn.execute(sa.text("CREATE TABLE pd_t (k TEXT PRIMARY KEY, v BIGINT)"))
        conn.execute(sa.text("INSERT INTO pd_t VALUES ('a', 1), ('b', 2), ('c', 3)"))
        conn.commit()
    df = pd.read_sql("SELECT k, v FROM pd_t ORDER BY k", engine)
    assert list(df["k"]) == ["a", "b", "c"]
    assert int(df["v"].sum()) == 6
    with psycopg.connect(DSN) as conn:
        df2 = pd.read_sql_query("SELECT v FROM pd_t WHERE k = 'b'", conn)
        assert df2.iloc[0, 0] == 2


@test
def pandas_to_sql_and_read_sql_table():
    engine = sa.create_engine(URL)
    df = pd.DataFrame({"user_id": [1, 2, 3], "score": [0.5, 0.25, 1.0], "label": ["a", "b", None]})
    # the default: the frame's index becomes a column with an index on it
    df.to_sql("pd_scores", engine)
    df.to_sql("pd_scores", engine, if_exists="append")
    back = pd.read_sql_table("pd_scores", engine)
    assert list(back.columns) == ["index", "user_id", "score", "label"], list(back.columns)
    assert len(back) == 6 and back["score"].sum() == 3.5, back
    indexes = sa.inspect(engine).get_indexes("pd_scores")
    assert [(i["name"], i["column_names"]) for i in indexes] == [("ix_pd_scores_index", ["index"])], indexes
    df.to_sql("pd_scores", engine, if_exists="replace", index=False)
    back = pd.read_sql_table("pd_scores", engine)
    assert list(back.columns) == ["user_id", "score", "label"] and len(back) == 3, back
    assert back["label"].isna().sum() == 1
    assert sa.inspect(engine).get_indexes("pd_scores") == []


@test
def sqlalchemy_and_pandas_in_a_schema():
    engine = sa.create_engine(URL)
    with engine.connect() as conn:
        conn.execute(sa.schema.CreateSchema("feat"))
        conn.execute(sa.text("CREATE TABLE feat.users (id BIGINT PRIMARY KEY, name TEXT NOT NULL)"))
        conn.execute(sa.text("CREATE TABLE users (id INT PRIMARY KEY)"))
        conn.commit()
    df = pd.DataFrame({"user_id": [1, 2, 3], "score": [0.5, 0.25, 1.0]})
    df.to_sql("scores", engine, schema="feat", index=False)
    df.to_sql("scores", engine, schema="feat", if_exists="append", index=False)
    with engine.connect() as conn:
        conn.execute(sa.text(
            "CREATE MATERIALIZED VIEW feat.totals AS SELECT user_id, sum(score) AS total FROM feat.scores GROUP BY user_id"))
        conn.execute(sa.text("CREATE VIEW feat.top AS SELECT user_id FROM feat.scores WHERE score > 0.3"))
        conn.execute(sa.text("FLUSH"))
        conn.commit()
    back = pd.read_sql_table("scores", engine, schema="feat")
    assert len(back) == 6 and back["score"].sum() == 3.5, back
    insp = sa.inspect(engine)
    assert "feat" in insp.get_schema_names(), insp.get_schema_names()
    assert set(insp.get_table_names(schema="feat")) == {"users", "scores"}, insp.get_table_names(schema="feat")
    assert "scores" not in insp.get_table_names()
    assert insp.has_table("scores", schema="feat") and not insp.has_table("scores")
    columns = [c["name"] for c in insp.get_columns("users", schema="feat")]
    assert columns == ["id", "name"], columns
    assert [c["name"] for c in insp.get_columns("users")] == ["id"]
    assert insp.get_pk_constraint("users", schema="feat")["constrained_columns"] == ["id"]
    assert insp.get_view_names(schema="feat") == ["top"], insp.get_view_names(schema="feat")
    assert "score > 0.3" in insp.get_view_definition("top", schema="feat")
    assert insp.get_materialized_view_names(schema="feat") == ["totals"]
    meta = sa.MetaData()
    meta.reflect(engine, schema="feat", views=True)
    assert {"feat.users", "feat.scores", "feat.top", "feat.totals"} <= set(meta.tables), set(meta.tables)
    totals = pd.read_sql("SELECT user_id, total FROM feat.totals ORDER BY user_id", engine)
    assert list(totals["total"]) == [1.0, 0.5, 2.0], totals
    with engine.connect() as conn:
        conn.execute(sa.schema.DropSchema("feat", cascade=True))
        conn.commit()
    assert "feat" not in sa.inspect(engine).get_schema_names()


@test
def psycopg_prepares_then_rolls_back():
    # After a rollback psycopg sends DEALLOCATE ALL for the statements it prepared itself
    # (the fifth execution of a query prepares it), then prepares them again.
    with psycopg.connect(DSN) as conn:
        conn.execute("CREATE TABLE py_prep (id INT PRIMARY KEY)")
        conn.execute("INSERT INTO py_prep SELECT x FROM generate_series(1, 20) AS g(x)")
        conn.commit()
        for attempt in range(3):
            for i in range(8):
                got = conn.execute("SELECT count(*) FROM py_prep WHERE id > %s", (i,)).fetchone()
                assert got == (20 - i,), got
            conn.rollback()


@test
def sql_prepare_execute_deallocate():
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute("PREPARE py_q(int) AS SELECT $1 * 2")
        assert conn.execute("EXECUTE py_q(21)").fetchone() == (42,)
        conn.execute("DEALLOCATE py_q")
        try:
            conn.execute("EXECUTE py_q(1)")
            raise AssertionError("a deallocated statement ran")
        except psycopg.errors.InvalidSqlStatementName:
            pass


@test
def psycopg_named_cursor():
    with psycopg.connect(DSN) as conn:
        conn.execute("CREATE TABLE py_many (id INT PRIMARY KEY, v TEXT)")
        conn.execute("INSERT INTO py_many SELECT x, 'v' || x FROM generate_series(1, 1000) AS g(x)")
        conn.commit()
        for binary in (False, True):
            with conn.cursor(name="py_cur", binary=binary) as cur:
                cur.itersize = 100
                cur.execute("SELECT id, v FROM py_many WHERE id > %s ORDER BY id", (10,))
                assert [d.name for d in cur.description] == ["id", "v"]
                assert cur.fetchone() == (11, "v11")
                assert len(cur.fetchmany(5)) == 5
                rest = cur.fetchall()
                assert len(rest) == 984 and rest[-1] == (1000, "v1000"), len(rest)
            conn.commit()


@test
def sqlalchemy_stream_results():
    engine = sa.create_engine(URL)
    with engine.connect() as conn:
        conn.execute(sa.text("CREATE TABLE sa_stream (id INT PRIMARY KEY)"))
        conn.execute(sa.text("INSERT INTO sa_stream SELECT x FROM generate_series(1, 5000) AS g(x)"))
        conn.commit()
        result = conn.execution_options(stream_results=True, max_row_buffer=500).execute(
            sa.text("SELECT id FROM sa_stream ORDER BY id")
        )
        ids = [row.id for row in result]
        assert ids == list(range(1, 5001)), len(ids)


@test
def sqlalchemy_orm_generated_keys():
    from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

    class Base(DeclarativeBase):
        pass

    class Account(Base):
        __tablename__ = "orm_accounts"
        id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
        name: Mapped[str] = mapped_column(sa.Text)

    class Event(Base):
        __tablename__ = "orm_events"
        id: Mapped[int] = mapped_column(sa.Integer, sa.Identity(start=100, increment=10),
                                        primary_key=True)
        kind: Mapped[str] = mapped_column(sa.Text)

    engine = sa.create_engine(URL)
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        accounts = [Account(name=f"a{i}") for i in range(3)]
        session.add_all(accounts)
        session.add(Event(kind="login"))
        session.commit()
        assert [a.id for a in accounts] == [1, 2, 3], [a.id for a in accounts]
        event = session.scalars(sa.select(Event)).one()
        assert (event.id, event.kind) == (100, "login")
        session.add(Event(kind="logout"))
        session.commit()
        ids = session.scalars(sa.select(Event.id).order_by(Event.id)).all()
        assert ids == [100, 110], ids
    with engine.connect() as conn:
        nxt = conn.execute(sa.text("SELECT nextval('orm_accounts_id_seq')")).scalar()
        assert nxt == 4, nxt
        assert conn.execute(sa.text("SELECT currval('orm_accounts_id_seq')")).scalar() == 4
    # currval is the session's own: a new connection has not called nextval
    with psycopg.connect(DSN, autocommit=True) as conn:
        try:
            conn.execute("SELECT currval('orm_accounts_id_seq')")
            raise AssertionError("currval before nextval in this session")
        except psycopg.errors.ObjectNotInPrerequisiteState:
            pass
    Base.metadata.drop_all(engine)
    with psycopg.connect(DSN, autocommit=True) as conn:
        try:
            conn.execute("SELECT nextval('orm_accounts_id_seq')")
            raise AssertionError("sequence outlived its table")
        except psycopg.errors.UndefinedTable:
            pass


@test
def psycopg_uuid_json_jsonb_and_time_zones():
    import uuid
    from psycopg.types.json import Json, Jsonb

    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute("CREATE TABLE py_docs (id UUID PRIMARY KEY, body JSONB, raw JSON, made TIMESTAMPTZ)")
        first, second = uuid.uuid4(), uuid.uuid4()
        made = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.timezone.utc)
        # parameters typed uuid, jsonb and json by psycopg, in text and in binary
        conn.execute("INSERT INTO py_docs VALUES (%s, %s, %s, %s)",
                     (first, Jsonb({"plan": "pro", "seats": [1, 2]}), Json({"k": 1}), made))
        conn.execute("INSERT INTO py_docs VALUES (%b, %b, %b, %b)",
                     (second, Jsonb({"plan": "free"}), Json([1]), made))
        rows = conn.execute("SELECT id, body, raw, body -> 'seats', body ->> 'plan' FROM py_docs "
                            "ORDER BY body ->> 'plan'").fetchall()
        assert rows == [
            (second, {"plan": "free"}, [1], None, "free"),
            (first, {"plan": "pro", "seats": [1, 2]}, {"k": 1}, [1, 2], "pro"),
        ], rows
        assert conn.execute("SELECT id FROM py_docs WHERE body @> %s",
                            (Jsonb({"plan": "pro"}),)).fetchall() == [(first,)]
        assert conn.execute("SELECT id FROM py_docs WHERE id = %s", (second,)).fetchall() == [(second,)]
        try:
            conn.execute("INSERT INTO py_docs (id, body) VALUES (%s, %s)", (uuid.uuid4(), "{oops"))
            raise AssertionError("bad jsonb accepted")
        except psycopg.errors.InvalidTextRepresentation:
            pass
        # timestamptz values come back as aware datetimes in the session's TimeZone
        conn.execute("SET TimeZone = 'America/New_York'")
        (got,) = conn.execute("SELECT made FROM py_docs WHERE id = %s", (first,)).fetchone()
        assert got == made and got.utcoffset() == datetime.timedelta(hours=-5), got
        conn.execute("DROP TABLE py_docs")



@test
def character_types_through_psycopg_and_sqlalchemy():
    engine = sa.create_engine(URL)
    meta = sa.MetaData()
    codes = sa.Table(
        "py_codes", meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("country", sa.CHAR(2)),
        sa.Column("label", sa.String(8)),
    )
    meta.create_all(engine)
    try:
        with engine.begin() as conn:
            conn.execute(codes.insert(), [{"id": 1, "country": "NZ", "label": "kiwi"},
                                          {"id": 2, "country": "J", "label": "long  "}])
        # the declared types, as PostgreSQL reports them
        columns = {c["name"]: c["type"] for c in sa.inspect(engine).get_columns("py_codes")}
        assert isinstance(columns["country"], sa.CHAR) and columns["country"].length == 2, columns
        assert isinstance(columns["label"], sa.VARCHAR) and columns["label"].length == 8, columns
        with psycopg.connect(DSN, autocommit=True) as conn:
            for binary in (False, True):
                with conn.cursor(binary=binary) as cur:
                    # character(n) comes back padded to n; spaces past a varchar's limit are cut
                    cur.execute("SELECT country, label FROM py_codes ORDER BY id")
                    assert cur.fetchall() == [("NZ", "kiwi"), ("J ", "long  ")], binary
                    # a value as it was read, padded, finds its row again
                    for key in ("J", "J "):
                        cur.execute("SELECT id FROM py_codes WHERE country = %s", (key,))
                        assert cur.fetchall() == [(2,)], (binary, key)
                    # cast to text (also under GROUP BY and in a subquery) it is unpadded text
                    cur.execute("SELECT country::text, count(*) FROM py_codes GROUP BY 1 ORDER BY 1")
                    assert cur.fetchall() == [("J", 1), ("NZ", 1)], binary
                    cur.execute("SELECT t FROM (SELECT country::text AS t FROM py_codes) s ORDER BY t")
                    assert cur.fetchall() == [("J",), ("NZ",)], binary
            try:
                conn.execute("INSERT INTO py_codes VALUES (3, 'NZL', 'x')")
                raise AssertionError("a value too long for character(2) was accepted")
            except psycopg.errors.StringDataRightTruncation:
                pass
            try:
                conn.execute("INSERT INTO py_codes VALUES (3, 'NZ', %s)", ("nine char",))
                raise AssertionError("a value too long for character varying(8) was accepted")
            except psycopg.errors.StringDataRightTruncation:
                pass
    finally:
        meta.drop_all(engine)
        engine.dispose()


passed = failed = 0
for fn in TESTS:
    try:
        fn()
        passed += 1
        print(f"test {fn.__name__} ... ok")
    except Exception:  # noqa: BLE001 - report every failure
        failed += 1
        print(f"test {fn.__name__} ... FAILED")
        traceback.print_exc()
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
