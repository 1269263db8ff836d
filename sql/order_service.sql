-- Schema of seckill_order, the order-service database. Applied at every
-- start-up of order-service: each statement must be safe to run again.

-- One row per order. status: NEW (committed, stock being deducted),
-- later PAID / CANCELLED / FAILED.
CREATE TABLE IF NOT EXISTS orders (
  id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  create_time DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  updated_at  DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
  order_no    VARCHAR(64)     NOT NULL,
  tx_no       VARCHAR(64)     NOT NULL,
  user_id     BIGINT          NOT NULL,
  product_id  BIGINT          NOT NULL,
  pay_count   INT             NOT NULL,
  status      VARCHAR(16)     NOT NULL,
  UNIQUE KEY uk_orders_order_no (order_no),
  UNIQUE KEY uk_orders_tx_no (tx_no),
  KEY idx_orders_user (user_id, create_time),
  KEY idx_orders_product_status (product_id, status),
  CONSTRAINT ck_orders_pay_count CHECK (pay_count > 0),
  CONSTRAINT ck_orders_ids CHECK (user_id > 0 AND product_id > 0),
  CONSTRAINT ck_orders_status CHECK (status IN ('NEW', 'PAID', 'CANCELLED', 'FAILED'))
) ENGINE = InnoDB;

-- The outcome of each distributed transaction this service started, keyed by
-- tx_no. Whoever inserts the row first decides: the local transaction inserts
-- COMMITTED together with the order; a broker check-back that finds no row
-- inserts ROLLED_BACK, which makes a still-running local transaction fail on
-- the duplicate key. So the two can never disagree.
CREATE TABLE IF NOT EXISTS tx_log (
  tx_no       VARCHAR(64) NOT NULL PRIMARY KEY,
  create_time DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  outcome     VARCHAR(16) NOT NULL,
  CONSTRAINT ck_order_tx_log_outcome CHECK (outcome IN ('COMMITTED', 'ROLLED_BACK'))
) ENGINE = InnoDB;

-- Products on sale and their per-user limit: the durable half of the Redis
-- admission state, from which it is rebuilt after a Redis restart or flush.
CREATE TABLE IF NOT EXISTS sales (
  product_id     BIGINT      NOT NULL PRIMARY KEY,
  per_user_limit INT         NOT NULL,
  opened_stock   INT         NOT NULL,
  opened_at      DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  CONSTRAINT ck_sales_limit CHECK (per_user_limit > 0),
  CONSTRAINT ck_sales_stock CHECK (opened_stock >= 0)
) ENGINE = InnoDB;

-- Idempotency-Key of the request that created an order: a retried request
-- with the same key returns that order; the unique index makes a second order
-- impossible even if the Redis claim on the key was lost.
ALTER TABLE orders ADD COLUMN IF NOT EXISTS idempotency_key VARCHAR(64) NULL;
CREATE UNIQUE INDEX IF NOT EXISTS uk_orders_idempotency ON orders (user_id, idempotency_key);

-- Payment: the simulated payment reference and when it was accepted. A paid
-- order keeps its pay_no, so repeating the same payment is recognised.
ALTER TABLE orders ADD COLUMN IF NOT EXISTS pay_no VARCHAR(64) NULL;
ALTER TABLE orders ADD COLUMN IF NOT EXISTS paid_at DATETIME(3) NULL;

-- Closing an order: the cancellation's own transaction (its tx_log row has
-- the same tx_no; stock-service dedupes its stock return on it), why and when
-- the order was closed (BUYER / TIMEOUT cancel, STOCK_INSUFFICIENT failure),
-- and when its Redis reservation was given back (NULL: the sweeper retries).
ALTER TABLE orders ADD COLUMN IF NOT EXISTS cancel_tx_no VARCHAR(64) NULL;
ALTER TABLE orders ADD COLUMN IF NOT EXISTS closed_reason VARCHAR(32) NULL;
ALTER TABLE orders ADD COLUMN IF NOT EXISTS closed_at DATETIME(3) NULL;
ALTER TABLE orders ADD COLUMN IF NOT EXISTS reservation_returned_at DATETIME(3) NULL;
CREATE INDEX IF NOT EXISTS idx_orders_status_time ON orders (status, create_time);

-- Messages that will not be delivered by themselves: copied here from the
-- DLQs of the watched consumer groups and from the broker's discarded
-- transactions (checked back too often), for an operator to look at.
-- Listed by reconciliation until marked resolved.
CREATE TABLE IF NOT EXISTS dead_letters (
  msg_id          VARCHAR(128) NOT NULL PRIMARY KEY,
  source          VARCHAR(255) NOT NULL,
  original_topic  VARCHAR(255) NULL,
  tags            VARCHAR(255) NULL,
  msg_keys        VARCHAR(512) NULL,
  body            TEXT         NOT NULL,
  reconsume_times INT          NOT NULL DEFAULT 0,
  seen_at         DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  resolved_at     DATETIME(3)  NULL,
  KEY idx_dead_letters_open (resolved_at, seen_at)
) ENGINE = InnoDB;

-- A PAID order that stock-service later found no stock for (paid while its
-- deduction was still pending): it stays PAID and needs a refund by a person;
-- reconciliation lists it until then.
ALTER TABLE orders ADD COLUMN IF NOT EXISTS stock_missing_at DATETIME(3) NULL;

-- When stock-service was seen to have applied the order's creation and its
-- cancellation (order-service asks it about committed messages older than
-- `redelivery.after_secs`; NULL: not yet confirmed). A committed message it
-- never applied (lost or discarded by the broker) is sent again.
ALTER TABLE orders ADD COLUMN IF NOT EXISTS stock_applied_at DATETIME(3) NULL;
ALTER TABLE orders ADD COLUMN IF NOT EXISTS cancel_applied_at DATETIME(3) NULL;
CREATE INDEX IF NOT EXISTS idx_orders_unconfirmed ON orders (stock_applied_at, create_time);
CREATE INDEX IF NOT EXISTS idx_orders_cancel_unconfirmed ON orders (cancel_applied_at, closed_at);

-- What the redelivery pass found a dead letter of an order message to be:
-- ROLLED_BACK, ALREADY_DELIVERED, RESENT, REDELIVERED or NEEDS_OPERATOR.
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS verdict VARCHAR(32) NULL;

-- A sale's product and prices (integer cents) and its time window: orders are
-- admitted from starts_at (NULL: at once) until ends_at (NULL: open-ended),
-- checked in Redis's admission step (the window is copied there). An order
-- records the unit price it was bought at (NULL for sales without a price);
-- paying it needs exactly pay_count × unit_price_cents.
ALTER TABLE sales ADD COLUMN IF NOT EXISTS name VARCHAR(200) NULL;
ALTER TABLE sales ADD COLUMN IF NOT EXISTS list_price_cents BIGINT NULL;
ALTER TABLE sales ADD COLUMN IF NOT EXISTS sale_price_cents BIGINT NULL;
ALTER TABLE sales ADD COLUMN IF NOT EXISTS starts_at DATETIME(3) NULL;
ALTER TABLE sales ADD COLUMN IF NOT EXISTS ends_at DATETIME(3) NULL;
ALTER TABLE orders ADD COLUMN IF NOT EXISTS unit_price_cents BIGINT NULL;

-- Finding an order by its cancellation's tx_no (the consistency auditor asks
-- which order a message or an applied row of stock-service belongs to; the
-- redelivery pass confirms cancellations by it).
CREATE INDEX IF NOT EXISTS idx_orders_cancel_tx_no ON orders (cancel_tx_no);
