"""The crypto story behind `make demo` runs end to end and its signatures verify."""

from __future__ import annotations

import os

from nacl.signing import VerifyKey

from quorumkeep.devnet import crypto_story


def test_story_signs_twice_under_one_key() -> None:
    lines: list[str] = []
    result = crypto_story.run(say=lines.append, random_bytes=os.urandom, seed=7)
    assert len(result.signatures) == 2
    for s in result.signatures:
        VerifyKey(s.public_key).verify(s.message, s.signature)
    assert {len(s.signers) for s in result.signatures} == {3, 4}
    assert any("same group public key" in line for line in lines)
