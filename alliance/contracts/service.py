"""Contracts between brands: registered signing keys, proposed versions, verified signatures, and the
terms in force that other domains price and match under.

No HTTP objects here. Errors are `Problem`s; another brand's contract answers exactly like a missing
one (404). A version is *signed* when both parties' signatures are stored, and only signed versions
ever govern anything (`terms_in_force`). The work is split by job; this module is the domain's one
import for other packages:

* `alliance.contracts.keys` - brands' signing keys (current key, history, registration);
* `alliance.contracts.views` - reading contracts and their versions' statuses;
* `alliance.contracts.proposals` - proposing versions and signing them;
* `alliance.contracts.in_force` - the terms in force (decided by `contracts.version_in_force`);
* `alliance.contracts.review` - the alliance's review (approval, or a rejection that vetoes a
  version), and the re-verification of stored signatures.

Functions other domains call:

* ``await terms_in_force(session, brand_x, brand_y, at) -> ContractTerms`` (409 ``no-contract-in-force``)
* ``await psi_terms_in_force(session, brand_x, brand_y, at) -> tuple[ContractTerms, PsiTerms]``
  (409 ``no-contract-in-force`` / ``psi-not-allowed``)
* ``await signed_versions(session, contract_id) -> list[ContractTerms]``
* ``await verify_stored_signatures(session, contract_id) -> None`` (re-checks every stored signature
  against the key it was made with; raises ``SignatureInvalid``)

Review is not a gate: a version is in force once both parties sign it, reviewed or not
(docs/decisions.md); a rejected version never governs anything, and an earlier one does not come back.
"""

from __future__ import annotations

from alliance.contracts.in_force import (
    ContractHistory,
    load_history,
    psi_terms_in_force,
    signed_versions,
    terms_between,
    terms_in_force,
)
from alliance.contracts.keys import current_signing_key, register_signing_key, signing_keys
from alliance.contracts.proposals import propose_contract, propose_version, sign_version
from alliance.contracts.review import review_version, verify_stored_signatures
from alliance.contracts.views import (
    contract_out,
    contract_views,
    get_contract,
    list_contracts,
    terms_from_canonical,
    terms_of,
)

__all__ = [
    "ContractHistory",
    "contract_out",
    "contract_views",
    "current_signing_key",
    "get_contract",
    "list_contracts",
    "load_history",
    "propose_contract",
    "propose_version",
    "psi_terms_in_force",
    "register_signing_key",
    "review_version",
    "sign_version",
    "signed_versions",
    "signing_keys",
    "terms_between",
    "terms_from_canonical",
    "terms_in_force",
    "terms_of",
    "verify_stored_signatures",
]
