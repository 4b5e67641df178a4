"""The sales process: pipelines and stage gates, follow-ups, dedupe, scoring, assignment, lead pools and
conversion.

Each feature is a module of this package with the services it offers and, where it takes part in
writes, jobs or plans, functions the feature plugin (:mod:`engine.runtime.sales.plugin`) collects:
``write_steps(workspace)``, ``event_handlers(workspace)``, ``job_kinds()``, ``plan_steps(workspace)``
and ``read_masks(workspace)``.  Its configuration kinds live in :mod:`engine.dsl.sales`.
"""
