"""Encrypted fields: the plan step moving values into and out of encryption, and key rotation.

The sealing itself lives in the runtime core (:mod:`engine.runtime.crypto`: the column type every write
goes through); this feature adds what changes stored data: :mod:`.migrate` (``encrypted: true`` turned on
or off, run by ``crm apply``) and :mod:`.rotate` (``crm keys rotate``).
"""
