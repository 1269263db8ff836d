-- Schema of seckill_stock, the stock-service database. Applied at every
-- start-up of stock-service: each statement must be safe to run again.

-- Stock per product; it can never go below zero.
CREATE TABLE IF NOT EXISTS stock (
  id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  product_id  BIGINT          NOT NULL,
  total_count INT             NOT NULL,
  updated_at  DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
  UNIQUE KEY uk_stock_product (product_id),
  CONSTRAINT ck_stock_non_negative CHECK (total_count >= 0)
) ENGINE = InnoDB;

-- Every order message applied, keyed by its tx_no: a redelivered message finds
-- its row and does nothing. An order's creation: DEDUCTED, or INSUFFICIENT
-- when the stock could not cover it (nothing deducted; order-service is told
-- and fails the order), or VOIDED when its cancellation came first (the later
-- creation then finds this row and deducts nothing). A cancellation (its own
-- tx_no): RESTORED (stock given back) or NOTHING_TO_RESTORE.
CREATE TABLE IF NOT EXISTS tx_log (
  tx_no       VARCHAR(64) NOT NULL PRIMARY KEY,
  create_time DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  order_no    VARCHAR(64) NOT NULL,
  product_id  BIGINT      NOT NULL,
  count       INT         NOT NULL,
  outcome     VARCHAR(24) NOT NULL,
  KEY idx_stock_tx_log_product (product_id, outcome),
  CONSTRAINT ck_stock_tx_log_outcome_v2 CHECK (outcome IN
    ('DEDUCTED', 'INSUFFICIENT', 'VOIDED', 'RESTORED', 'NOTHING_TO_RESTORE'))
) ENGINE = InnoDB;

-- Databases created before cancellations existed: widen the outcome column and check.
ALTER TABLE tx_log MODIFY COLUMN outcome VARCHAR(24) NOT NULL;
ALTER TABLE tx_log DROP CONSTRAINT IF EXISTS ck_stock_tx_log_outcome;
ALTER TABLE tx_log ADD CONSTRAINT IF NOT EXISTS ck_stock_tx_log_outcome_v2 CHECK (outcome IN
  ('DEDUCTED', 'INSUFFICIENT', 'VOIDED', 'RESTORED', 'NOTHING_TO_RESTORE'));
