-- PostgreSQL behaviours that clients and users rely on, run side by side against PostgreSQL 15
-- by tests/compat.rs. Outcomes are recorded in tests/compat/outcomes/behaviours.txt; every
-- statement whose outcome is not `same` or `refused` is a known difference listed in the README.

-- Operator precedence and three-valued logic
SELECT 1 IS DISTINCT FROM 2 AND false;
SELECT NULL IS DISTINCT FROM NULL OR true;
SELECT NOT true = false;
SELECT NULL AND false, NULL OR true, NULL AND true;
SELECT 2 + 3 * 4, (2 + 3) * 4, -2 ^ 2, 2 ^ 3 ^ 2;
SELECT 7 / 2, -7 / 2, 7 % 3, -7 % 3, 7.0 / 2;

-- Arithmetic errors and limits
SELECT 1 / 0;
SELECT 1.0 / 0;
SELECT 1.0::float8 / 0;
SELECT 5 % 0;
SELECT 2147483647::int4 + 1;
SELECT 9223372036854775807::int8 + 1;
SELECT (-2147483648)::int4 * -1;
SELECT 2147483647::int8 * 2;
SELECT '10e400'::float8;
SELECT 'abc'::int4;
SELECT 1.5::int4, 2.5::int4, -2.5::int4, 2.5::float8::int4, 3.5::float8::int4;
SELECT 32768::int2;

-- Numeric and float output
SELECT 0.1 + 0.2, 0.1::float8 + 0.2::float8, 1e100::float8, 1.5e-7::float8;
SELECT 10::numeric / 3, round(2.5), round(-2.5), round(2.567, 2), trunc(-2.7);
SELECT 'NaN'::float8, 'Infinity'::float8, '-inf'::float8;
SELECT abs(-3), ceil(2.1), floor(-2.1), sqrt(16), power(2, 10), mod(10, 3);

-- Text
SELECT 'a' || 'b', 'a' || NULL, concat('a', NULL, 'b'), length('héllo'), upper('abc');
SELECT substring('hello' from 2 for 3), position('l' in 'hello'), replace('aaa', 'a', 'b');
SELECT trim('  x  '), ltrim('xxy', 'x'), rtrim('yxx', 'x'), lpad('7', 3, '0'), rpad('a', 3, '-');
SELECT split_part('a,b,c', ',', 2), left('hello', 2), right('hello', 2), reverse('abc');
SELECT 'abc' LIKE 'a%', 'abc' ILIKE 'A_C', 'a%c' LIKE 'a\%c', 'a_c' LIKE 'a#_c' ESCAPE '#';
SELECT 'abc' ~ 'b', 'abc' ~* 'B', regexp_replace('a1b2', '[0-9]', 'X', 'g');
SELECT to_hex(255), to_hex(-1), md5('abc'), chr(65), ascii('A');
SELECT format('%s-%s', 'a', 1), initcap('hello world'), repeat('ab', 3);
SELECT 'abc' SIMILAR TO 'a%', 'abc' SIMILAR TO '(a|b)%c', 'a.c' SIMILAR TO 'a.c', 'abc' SIMILAR TO 'a.c';
SELECT string_agg(x, ',' ORDER BY x) FROM (VALUES ('b'), ('a'), ('c')) t(x);

-- Casts and types
SELECT CAST('2024-02-29' AS date), '2024-02-29'::date + 1, date '2024-03-01' - date '2024-02-01';
SELECT '1 day'::interval, INTERVAL '1 hour 30 minutes', INTERVAL '1 year 2 months';
SELECT 2 * INTERVAL '13 hours', INTERVAL '1 day' / 2, INTERVAL '1 month' * 1.5;
SELECT INTERVAL '30 days' = INTERVAL '1 month', INTERVAL '24 hours' = INTERVAL '1 day';
SELECT EXTRACT(EPOCH FROM INTERVAL '1.5 seconds'), EXTRACT(EPOCH FROM INTERVAL '1 day');
SELECT EXTRACT(YEAR FROM DATE '2024-05-06'), EXTRACT(DOW FROM DATE '2024-05-06');
SELECT EXTRACT(EPOCH FROM TIMESTAMP '2024-01-01 00:00:01.5');
SELECT date_trunc('hour', TIMESTAMP '2024-05-06 07:08:09'), date_part('minute', TIMESTAMP '2024-05-06 07:08:09');
SELECT TIMESTAMP '2024-05-06 07:08:09' + INTERVAL '1 day', TIMESTAMP '2024-05-06' - TIMESTAMP '2024-05-01';
SELECT TIMESTAMP '2024-05-01' - TIMESTAMP '2024-05-06 01:00:00.5';
SELECT TIMESTAMP '2024-05-06 07:08:09+02';
SELECT TIMESTAMPTZ '2024-05-06 07:08:09+02';
SELECT '2024-05-06 07:08:09'::timestamptz;
SELECT CAST(INTERVAL '1 day 2 hours' AS text);
SELECT true::text, 1::boolean, 't'::boolean, 'yes'::boolean, 'off'::boolean;
SELECT 12::text, 1.50::text, 1.5::float8::text, '12'::int8 + 1;
SELECT pg_typeof(1), pg_typeof(1.5), pg_typeof('a'::text), pg_typeof(now());

-- NULL handling and conditionals
SELECT coalesce(NULL, 2, 3), nullif(1, 1), nullif(1, 2), greatest(1, 3, 2), least(1, NULL, 0);
SELECT CASE WHEN 1 > 2 THEN 'a' WHEN 2 > 1 THEN 'b' ELSE 'c' END, CASE 2 WHEN 1 THEN 'x' END;
SELECT NULL = NULL, NULL IS NULL, 1 IN (1, NULL), 2 IN (1, NULL), 2 NOT IN (1, NULL);

-- Tables, DML and constraints
CREATE TABLE people (id INT PRIMARY KEY, name TEXT NOT NULL, age INT, team TEXT);
INSERT INTO people VALUES (1, 'ann', 31, 'a'), (2, 'bob', 25, 'b'), (3, 'cy', NULL, 'a');
INSERT INTO people VALUES (1, 'dup', 1, 'x');
INSERT INTO people VALUES (4, NULL, 1, 'x');
INSERT INTO people (id, name) VALUES (4, 'dee') RETURNING id, name, age;
UPDATE people SET age = age + 1 WHERE team = 'a';
DELETE FROM people WHERE id = 4;
SELECT * FROM people ORDER BY id;
SELECT team, count(*), count(age), sum(age), avg(age), min(name), max(name) FROM people GROUP BY team ORDER BY team;
SELECT count(*) FILTER (WHERE age > 26), bool_and(age > 20), bool_or(age > 30) FROM people;
SELECT team, count(*) FROM people GROUP BY team HAVING count(*) > 1;
SELECT name FROM people ORDER BY age NULLS FIRST, name;
SELECT name FROM people ORDER BY age DESC;
SELECT DISTINCT team FROM people ORDER BY team;
SELECT DISTINCT ON (team) team, name FROM people ORDER BY team, name DESC;
SELECT * FROM people ORDER BY id LIMIT 1 OFFSET 1;
SELECT id FROM people WHERE name IN (SELECT name FROM people WHERE age > 26);
SELECT id FROM people p WHERE EXISTS (SELECT 1 FROM people q WHERE q.age > p.age) ORDER BY id;
SELECT id, (SELECT max(age) FROM people q WHERE q.team = p.team) FROM people p ORDER BY id;

-- Joins
CREATE TABLE teams (team TEXT PRIMARY KEY, title TEXT);
INSERT INTO teams VALUES ('a', 'Alpha'), ('c', 'Gamma');
SELECT name, title FROM people JOIN teams USING (team) ORDER BY name;
SELECT team, name, title FROM people FULL JOIN teams USING (team) ORDER BY team, name;
SELECT p.name, t.title FROM people p LEFT JOIN teams t ON p.team = t.team ORDER BY p.name;
SELECT count(t.*), count(*) FROM people p LEFT JOIN teams t ON p.team = t.team;
SELECT * FROM people p JOIN teams t USING (team) WHERE team = 'a' ORDER BY id;
SELECT p.name, x.n FROM people p, LATERAL (SELECT count(*) AS n FROM people q WHERE q.id <= p.id) x ORDER BY p.name;

-- Set operations
SELECT 1 UNION SELECT 1 UNION ALL SELECT 2;
SELECT x FROM (VALUES (1), (1), (2)) t(x) EXCEPT ALL SELECT 1;
SELECT x FROM (VALUES (1), (1), (2)) t(x) INTERSECT ALL SELECT x FROM (VALUES (1), (1)) u(x);
SELECT x FROM (VALUES (1), (1), (2)) t(x) EXCEPT SELECT 2;

-- Window functions
SELECT id, row_number() OVER (ORDER BY id), sum(id) OVER (ORDER BY id ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) FROM people ORDER BY id;
SELECT id, rank() OVER w, lag(id) OVER w, first_value(id) OVER w FROM people WINDOW w AS (ORDER BY id DESC) ORDER BY id;
SELECT id, sum(id) OVER (w ROWS UNBOUNDED PRECEDING) FROM people WINDOW w AS (ORDER BY id) ORDER BY id;

-- Common table expressions
WITH t AS (SELECT 1 AS x) SELECT x + 1 FROM t;
WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT sum(n) FROM r;

-- Set-returning functions
SELECT generate_series(1, 3);
SELECT * FROM generate_series(1, 3) AS g(x);
SELECT unnest(ARRAY[1, 2]), 'x';
SELECT ARRAY[1, 2, 3], array_length(ARRAY[1, 2, 3], 1), (ARRAY[1, 2, 3])[2];

-- Sessions and functions clients call
SELECT current_user = session_user, current_schema();
SHOW TimeZone;
SET TimeZone = 'America/New_York';
SELECT TIMESTAMPTZ '2024-01-01 12:00:00+00';
RESET TimeZone;
SHOW TimeZone;
SELECT current_setting('TimeZone');
SELECT version() LIKE 'PostgreSQL%';
SELECT encode('abc'::bytea, 'hex'), encode('\x0102'::bytea, 'base64'), decode('616263', 'hex');
SELECT length(gen_random_uuid()::text), '00000000-0000-0000-0000-000000000001'::uuid;
SELECT age(TIMESTAMP '2024-05-06', TIMESTAMP '2023-01-01');
SELECT pg_sleep(0);
SELECT '{"a": {"b": 1}}'::jsonb -> 'a', '{"a": 1}'::json ->> 'a', '{"a": 1, "b": 2}'::jsonb @> '{"a": 1}';
SELECT make_interval(days => 10), to_char(TIMESTAMP '2024-05-06 07:08:09', 'YYYY-MM-DD HH24:MI');

-- DDL users expect
CREATE TABLE t_as AS SELECT id, name FROM people WHERE id < 3;
SELECT * FROM t_as ORDER BY id;
CREATE SCHEMA s1;
CREATE TABLE s1.tt (x INT);
INSERT INTO s1.tt VALUES (1);
SELECT * FROM s1.tt;
CREATE TEMP TABLE tmp1 (x INT);
INSERT INTO tmp1 VALUES (5);
SELECT * FROM tmp1;
ALTER TABLE t_as ADD COLUMN extra INT;
ALTER TABLE t_as RENAME COLUMN extra TO more;
ALTER TABLE t_as DROP COLUMN more;
ALTER TABLE t_as RENAME TO t_as2;
SELECT * FROM t_as2 ORDER BY id;
CREATE TABLE u1 (a INT UNIQUE, b INT CHECK (b > 0));
INSERT INTO u1 VALUES (1, 1);
INSERT INTO u1 VALUES (1, 2);
INSERT INTO u1 VALUES (2, -1);
CREATE TABLE bad_opts (x INT) WITH (nonsense = 'x');
INSERT INTO no_such_table VALUES (1);
SELECT no_such_column FROM people;
SELECT * FROM people WHERE;
DROP TABLE people, teams, t_as2, u1, s1.tt, tmp1;
