//! The stock invariant, written once: every item a sale opened with is either
//! still in the stock DB or held by an order (NEW/PAID), and no more than
//! that was sold. The batch runner, the load tool and the tests all judge a
//! sale with it.

/// A sale's stock, as the two databases account for it once quiet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StockLedger {
    /// What the sale was opened with.
    pub opened: i64,
    /// The stock DB's count now.
    pub db_stock: i64,
    /// Items held by NEW/PAID orders (or deducted, for the load tool).
    pub sold: i64,
}

impl StockLedger {
    /// Items sold beyond what the sale had.
    pub fn oversold(&self) -> i64 {
        (self.sold - self.opened).max(0)
    }

    /// Every item is in the DB or held by an order: opened = DB stock + sold.
    pub fn accounted(&self) -> bool {
        self.db_stock + self.sold == self.opened
    }
}

#[cfg(test)]
mod tests {
    use super::StockLedger;

    #[test]
    fn a_balanced_ledger_is_accounted_and_not_oversold() {
        let ledger = StockLedger {
            opened: 10,
            db_stock: 3,
            sold: 7,
        };
        assert!(ledger.accounted());
        assert_eq!(ledger.oversold(), 0);
    }

    #[test]
    fn selling_past_the_stock_is_oversold_and_unaccounted() {
        let ledger = StockLedger {
            opened: 10,
            db_stock: 0,
            sold: 12,
        };
        assert_eq!(ledger.oversold(), 2);
        assert!(!ledger.accounted());
    }
}
