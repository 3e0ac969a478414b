-- The pseudonymisation map (silver; restricted: it holds the raw Fitbit Id).
CREATE TABLE IF NOT EXISTS user_identity (
  fitbit_id BIGINT NOT NULL,
  user_key STRING NOT NULL
) USING DELTA COMMENT 'Fitbit Id -> user_key (HMAC-SHA256)';
