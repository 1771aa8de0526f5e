"""Referrals: a referring brand gets a signed, expiring token for a member; the receiving brand reports
the member's purchase with it inside the contract's attribution window and owes the commission."""
