"""The trusted ledger: RFC 9162 Merkle log, C2SP checkpoints, witnesses, proofs, tiles and the verifier.

Other rooms reach the ledger through the change-event stream (exchange.*, citizen.* events); tools open a
`Ledger` themselves, e.g.
`ledger.register_data_rights(asset, owner, description)` or `ledger.append(kind, actor, subject, payload)`.
"""

from civicmesh.ledger.log import Ledger

__all__ = ["Ledger"]
