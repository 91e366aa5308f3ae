-- The README's walkthrough: `psql -h 127.0.0.1 -p 5440 -U augur -f sql/quickstart.sql`.

CREATE TABLE users (user_id BIGINT PRIMARY KEY, country TEXT NOT NULL, segment TEXT DEFAULT 'new');

INSERT INTO users VALUES (1, 'DE', 'vip'), (2, 'FR', DEFAULT), (3, 'DE', 'churn');

SELECT country, count(*) FROM users GROUP BY country ORDER BY country;

INSERT INTO users VALUES (2, 'US')
ON CONFLICT (user_id) DO UPDATE SET country = excluded.country
RETURNING *;

-- a RocksDB point read, not a scan
SELECT * FROM users WHERE user_id = 3;

CREATE TABLE txns (txn_id BIGINT PRIMARY KEY, user_id BIGINT, amount DOUBLE PRECISION, ts TIMESTAMP);

INSERT INTO txns VALUES
  (10, 1, 25.0, '2026-11-21 10:00:00'),
  (11, 1, 40.5, '2026-11-21 10:05:00'),
  (12, 3, 7.25, '2026-11-21 11:00:00');

-- per-user features with a join and a window function
SELECT u.user_id, u.country, t.txn_id, t.amount,
       sum(t.amount) OVER (PARTITION BY u.user_id ORDER BY t.ts) AS running_total
FROM users u JOIN txns t ON t.user_id = u.user_id
ORDER BY u.user_id, t.ts;
