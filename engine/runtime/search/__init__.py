"""Global search (docs/search.md): searchable fields, the SQLite FTS5 index, the search service."""
