"""Working together on records: attachments (files), comments with ``@mentions``, and the record timeline.

A feature plugin (:mod:`engine.runtime.collab.plugin`): its tables are ``crm_files`` and ``crm_comments``;
every read checks the record through the record service (a record the caller cannot read is 404, and so
is everything hanging off it).  See docs/attachments.md, docs/comments.md and docs/timeline.md.
"""
