"""Cross-brand benefits: the catalogue a funding brand publishes, coupons issued to distributing
brands, exactly-once redemptions priced under the contract in force, and reversals."""
