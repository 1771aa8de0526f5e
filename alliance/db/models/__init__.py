"""Every ORM model, imported here so Alembic and the app see the whole schema."""

from alliance.db.models.audit import AuditEntry
from alliance.db.models.benefits import (
    Benefit,
    BenefitDistributor,
    BenefitMemberUsage,
    BenefitTag,
    CommissionMonthTotal,
    Coupon,
    CouponBatch,
    IdempotencyRecord,
    Redemption,
    RedemptionReversal,
)
from alliance.db.models.brand import ApiKey, Brand
from alliance.db.models.console import ConsoleLoginAttempt, ConsoleSecret, ConsoleSession, ConsoleUser
from alliance.db.models.contracts import Contract, ContractReview, ContractSignature, ContractVersion, SigningKey
from alliance.db.models.ledger import (
    LedgerAccount,
    LedgerChainHead,
    LedgerPeriod,
    LedgerPosting,
    LedgerQuarantine,
    LedgerTransaction,
)
from alliance.db.models.matches import MatchJob, MatchTaskRow, PsiBudget
from alliance.db.models.referrals import Conversion, ExchangeSigningKey, Referral
from alliance.db.models.segments import PointChunk, Segment
from alliance.db.models.settlement import SettlementDispute, SettlementRun, SettlementStatement, StatementKey
from alliance.db.models.webhooks import WebhookDelivery, WebhookEndpoint

__all__ = [
    "ApiKey",
    "AuditEntry",
    "Benefit",
    "BenefitDistributor",
    "BenefitMemberUsage",
    "BenefitTag",
    "Brand",
    "CommissionMonthTotal",
    "ConsoleLoginAttempt",
    "ConsoleSecret",
    "ConsoleSession",
    "ConsoleUser",
    "Contract",
    "ContractReview",
    "ContractSignature",
    "ContractVersion",
    "Conversion",
    "Coupon",
    "CouponBatch",
    "ExchangeSigningKey",
    "IdempotencyRecord",
    "LedgerAccount",
    "LedgerChainHead",
    "LedgerPeriod",
    "LedgerPosting",
    "LedgerQuarantine",
    "LedgerTransaction",
    "MatchJob",
    "MatchTaskRow",
    "PointChunk",
    "PsiBudget",
    "Redemption",
    "RedemptionReversal",
    "Referral",
    "Segment",
    "SettlementDispute",
    "SettlementRun",
    "SettlementStatement",
    "SigningKey",
    "StatementKey",
    "WebhookDelivery",
    "WebhookEndpoint",
]
