"""The configuration lifecycle against a database: plan, apply, revisions.

* plan: :mod:`.model` (Change, Plan and the registry of change kinds),
  :mod:`.snapshot` (the state a revision leaves, as versioned JSON),
  :mod:`.probes` (the read queries a plan makes), :mod:`.field_rules`
  (safe / destructive / blocked per field change), :mod:`.diff` (the plan);
* apply: :mod:`.apply` (one transaction) and :mod:`.executors` (the DDL and
  data moves of each change kind);
* :mod:`.revisions` (``crm_revisions``: bundles, rollback, pull, drift);
* :mod:`.operations` (what the CLI and the admin UI call: plan a folder,
  apply with confirmation, roll back, pull).
"""
