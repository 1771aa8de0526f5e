"""Generate psi_known_answers.json: our own known-answer vectors for partners re-implementing the agent.

The file pins, for a fixed alliance id and two fixed scalars: normalisation of sample inputs
(accepted canonical bytes or the reject reason), hash_to_point, single blinding by each brand,
double blinding (checked to commute) and the 16-byte truncation that is compared.

Run once from the repository root; the output is committed and checked by tests/privacy/test_psi.py:

    .venv/bin/python tests/privacy/vectors/make_vectors.py
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from privacy.blind import alliance_dst, blind, hash_to_point
from privacy.keys import clamp_scalar
from privacy.normalize import InvalidIdentifier, normalize
from privacy.psi import TRUNCATED_SIZE

OUT = Path(__file__).with_name("psi_known_answers.json")
ALLIANCE_ID = b"alliance-test-vectors"
SCALAR_A = clamp_scalar(hashlib.sha256(b"BAX-PSI test vector scalar a").digest())
SCALAR_B = clamp_scalar(hashlib.sha256(b"BAX-PSI test vector scalar b").digest())

# (id_type, input, region)
INPUTS: list[tuple[str, str, str]] = [
    ("phone", "13800138000", "CN"),
    ("phone", " +86 138-0013-8000 ", "CN"),
    ("phone", "008613800138000", "CN"),
    ("phone", "8613800138000", "CN"),
    ("phone", "\uff11\uff13\uff18\uff10\uff10\uff11\uff13\uff18\uff10\uff10\uff10", "CN"),
    ("phone", "010 6552 9988", "CN"),
    ("phone", "(650) 253-0000", "US"),
    ("phone", "+44 20 7946 0958", "CN"),
    ("phone", "12345", "CN"),
    ("phone", "not a number", "CN"),
    ("email", "  Alice.Liu@Example.CN ", "CN"),
    ("email", "bob+promo@mail.163.com", "CN"),
    ("email", "no-at-sign.example.cn", "CN"),
    ("email", "\u5f20\u4f1f@example.cn", "CN"),
    ("unionid", " oZ3bT1mNqR8sXvY2wK9pL4cD7eF0 ", "CN"),
    ("openid", "o6_bmjrPTlm6_2sgVt7hMZOPfL2M", "CN"),
    ("custom", "CRM-000042", "CN"),
    ("custom", "two words", "CN"),
    ("custom", "   ", "CN"),
]


def main() -> None:
    normalization = []
    canonicals: list[bytes] = []
    for id_type, text, region in INPUTS:
        entry: dict[str, str] = {"id_type": id_type, "input": text, "region": region}
        try:
            canonical = normalize(text, id_type, region=region)
        except InvalidIdentifier as exc:
            entry["reject_reason"] = exc.reason.value
        else:
            entry["canonical"] = canonical.decode("utf-8")
            if canonical not in canonicals:
                canonicals.append(canonical)
        normalization.append(entry)

    items = []
    for canonical in canonicals:
        point = hash_to_point(ALLIANCE_ID, canonical)
        blinded_a = blind(SCALAR_A, point)
        blinded_b = blind(SCALAR_B, point)
        blinded_ab = blind(SCALAR_B, blinded_a)
        assert blinded_ab == blind(SCALAR_A, blinded_b)
        items.append(
            {
                "canonical": canonical.decode("utf-8"),
                "point": point.hex(),
                "blinded_a": blinded_a.hex(),
                "blinded_b": blinded_b.hex(),
                "doubly_blinded": blinded_ab.hex(),
                "truncated": blinded_ab[:TRUNCATED_SIZE].hex(),
            }
        )

    document = {
        "description": (
            "Brand Alliance Exchange PSI known answers. point = RFC 9380 curve25519_XMD:SHA-512_ELL2_NU_ "
            "map_to_curve output (no clear_cofactor) as a 32-byte little-endian u-coordinate, with "
            "DST = dst below; blinded_x = X25519(scalar_x, point); doubly_blinded = X25519(scalar_b, "
            "blinded_a) = X25519(scalar_a, blinded_b); truncated = its first 16 bytes. Scalars are "
            "already clamped. Byte strings are hex unless noted; canonical values are UTF-8 text."
        ),
        "generator": "tests/privacy/vectors/make_vectors.py",
        "alliance_id": ALLIANCE_ID.decode("ascii"),
        "dst": alliance_dst(ALLIANCE_ID).decode("ascii"),
        "scalar_a": SCALAR_A.hex(),
        "scalar_b": SCALAR_B.hex(),
        "normalization": normalization,
        "items": items,
    }
    OUT.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({len(items)} items, {len(normalization)} normalisation cases)")


if __name__ == "__main__":
    main()
