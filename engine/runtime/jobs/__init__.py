"""Durable events, the job queue and ``crm worker`` (see :mod:`.outbox`, :mod:`.queue`, :mod:`.worker`)."""
